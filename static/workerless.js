/*! workerless.js 0.1.0 - loads the fragments of a skeleton page (the Workerless Pattern). No dependencies. */
(function () {
  "use strict";

  // Included twice (two layouts, a copy-paste): keep the first copy, or every
  // placeholder would be fetched twice and every Retry click handled twice.
  if (window.workerless && window.workerless.version) {
    return;
  }

  const VERSION = "0.1.0";
  const DEFAULT_RETRIES = 3;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 8000;
  const RETRY_AFTER_DEFAULT_S = 1;
  const RETRY_AFTER_MAX_S = 60;
  const SPINNER_HTML =
    '<span class="wl-spinner" role="status"><span class="wl-visually-hidden">Loading\u2026</span></span>';

  // One load per placeholder at a time: a second request gets the running promise.
  const running = new WeakMap();
  // The template's own spinner markup (with its label), put back when Retry is clicked.
  const initialMarkup = new WeakMap();
  // Placeholders loadAll() has already dealt with; it must not reload finished content.
  const started = new WeakSet();

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  // Never sleep past the total timeout: the loop then notices it and gives up on time.
  function sleepWithin(ms, deadline) {
    if (deadline !== null) {
      ms = Math.min(ms, Math.max(0, deadline - Date.now()));
    }
    return sleep(ms);
  }

  function parseRetryAfter(value) {
    // Only the delay-seconds form; an HTTP-date is not worth the clock-skew trouble here.
    if (value === null || !/^\s*\d+\s*$/.test(value)) {
      return RETRY_AFTER_DEFAULT_S;
    }
    return Math.min(Math.max(parseInt(value, 10), 0), RETRY_AFTER_MAX_S);
  }

  function backoffMs(failures) {
    return Math.min(BACKOFF_FIRST_MS * Math.pow(2, failures - 1), BACKOFF_MAX_MS);
  }

  function retriesOf(element) {
    const raw = element.getAttribute("data-fragment-retries");
    if (raw === null || !/^\s*\d+\s*$/.test(raw)) {
      return DEFAULT_RETRIES;
    }
    return parseInt(raw, 10);
  }

  function timeoutSecondsOf(element) {
    const value = parseFloat(element.getAttribute("data-fragment-timeout"));
    return isFinite(value) && value > 0 ? value : null;
  }

  function timeoutError(seconds) {
    const error = new Error("gave up after " + seconds + " s");
    error.name = "TimeoutError";
    return error;
  }

  // Composed: a streamed page's placeholders live in a shadow root, and the page listens on document.
  function dispatch(element, name, detail) {
    element.dispatchEvent(new CustomEvent(name, { bubbles: true, composed: true, detail: detail }));
  }

  // The body is read under the same abort signal, so a timeout also covers a slow body.
  async function request(url, deadline) {
    const controller = deadline !== null && typeof AbortController === "function" ? new AbortController() : null;
    const timer = controller ? setTimeout(function () {
      controller.abort();
    }, Math.max(0, deadline - Date.now())) : null;
    const init = { headers: { Accept: "text/html" }, credentials: "same-origin" };
    if (controller) {
      init.signal = controller.signal;
    }
    try {
      const response = await fetch(url, init);
      const text = await response.text();
      return { response: response, text: text };
    } finally {
      if (timer !== null) {
        clearTimeout(timer);
      }
    }
  }

  function showLoaded(element, url, response, text) {
    const cacheStatus = response.headers.get("Cache-Status") || "";
    element.innerHTML = text;
    element.setAttribute("data-cache-status", cacheStatus);
    element.setAttribute("data-fragment-state", "loaded");
    element.setAttribute("aria-busy", "false");
    dispatch(element, "workerless:load", {
      url: url,
      status: response.status,
      cacheStatus: cacheStatus,
      element: element,
    });
    // A fragment may itself contain placeholders; they load like the page's own.
    loadDescendants(element);
    return "loaded";
  }

  function showError(element, url, status, error) {
    let reason = "network error";
    if (status !== null) {
      reason = "HTTP " + status;
    } else if (error && error.name === "TimeoutError") {
      reason = "timed out";
    }
    // Built with DOM calls, not innerHTML, so nothing from the response can end up as markup.
    const box = document.createElement("div");
    box.className = "wl-error";
    const message = document.createElement("p");
    message.className = "wl-error-message";
    message.textContent = "This part of the page could not be loaded (" + reason + ").";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "wl-retry";
    button.setAttribute("data-fragment-retry", "");
    button.textContent = "Retry";
    box.appendChild(message);
    box.appendChild(button);

    element.textContent = "";
    element.appendChild(box);
    element.removeAttribute("data-cache-status");
    element.setAttribute("data-fragment-state", "error");
    element.setAttribute("aria-busy", "false");
    dispatch(element, "workerless:error", { url: url, status: status, error: error, element: element });
    return "error";
  }

  async function run(element, url) {
    const retries = retriesOf(element);
    const timeoutS = timeoutSecondsOf(element);
    const deadline = timeoutS === null ? null : Date.now() + timeoutS * 1000;
    let failures = 0;
    let attempts = 0;

    element.setAttribute("aria-busy", "true");
    element.setAttribute("data-fragment-state", "loading");

    for (;;) {
      // Removed from the page while we waited: stop asking on behalf of nobody.
      if (attempts > 0 && !element.isConnected) {
        return "detached";
      }
      attempts += 1;
      if (deadline !== null && Date.now() >= deadline) {
        return showError(element, url, null, timeoutError(timeoutS));
      }

      let result;
      try {
        result = await request(url, deadline);
      } catch (error) {
        if (!element.isConnected) {
          return "detached";
        }
        if (deadline !== null && Date.now() >= deadline) {
          return showError(element, url, null, timeoutError(timeoutS));
        }
        failures += 1;
        if (failures > retries) {
          return showError(element, url, null, error);
        }
        console.debug("workerless: network error on %s, retry %d/%d", url, failures, retries, error);
        element.setAttribute("data-fragment-state", "loading");
        await sleepWithin(backoffMs(failures), deadline);
        continue;
      }

      if (!element.isConnected) {
        return "detached";
      }

      const response = result.response;
      const status = response.status;

      if (status === 202) {
        // The server is still computing and keeps going; asking again is cheap
        // because the next request is held until the result is ready.
        const waitS = parseRetryAfter(response.headers.get("Retry-After"));
        element.setAttribute("data-fragment-state", "pending");
        dispatch(element, "workerless:pending", {
          url: url,
          status: status,
          retryAfter: waitS,
          cacheStatus: response.headers.get("Cache-Status") || "",
          element: element,
        });
        await sleepWithin(waitS * 1000, deadline);
        continue;
      }

      if (status >= 200 && status < 300) {
        return showLoaded(element, url, response, result.text);
      }

      if (status >= 500) {
        failures += 1;
        if (failures > retries) {
          return showError(element, url, status, new Error("HTTP " + status));
        }
        let delay = backoffMs(failures);
        // A 503 while the server restarts may say how long it needs; asking sooner is wasted.
        const retryAfter = response.headers.get("Retry-After");
        if (status === 503 && retryAfter !== null && /^\s*\d+\s*$/.test(retryAfter)) {
          delay = Math.max(delay, parseRetryAfter(retryAfter) * 1000);
        }
        console.debug("workerless: HTTP %d on %s, retry %d/%d", status, url, failures, retries);
        element.setAttribute("data-fragment-state", "loading");
        await sleepWithin(delay, deadline);
        continue;
      }

      // Any other status (4xx mostly) will not get better by asking again.
      return showError(element, url, status, new Error("HTTP " + status));
    }
  }

  function load(element) {
    if (!element || element.nodeType !== 1 || !element.hasAttribute("data-fragment")) {
      return Promise.reject(new TypeError("workerless.load() needs an element with a data-fragment attribute"));
    }
    const existing = running.get(element);
    if (existing) {
      return existing;
    }
    if (!initialMarkup.has(element) && element.querySelector(".wl-spinner")) {
      initialMarkup.set(element, element.innerHTML);
    }
    started.add(element);
    const url = element.getAttribute("data-fragment");
    const promise = run(element, url).then(
      function (state) {
        running.delete(element);
        if (state === "detached") {
          // Put back into the page later, it should load again.
          started.delete(element);
        }
        return state;
      },
      function (error) {
        // Only a bug in this file gets here; still leave the page in a usable state.
        running.delete(element);
        console.error("workerless: unexpected failure loading %s", url, error);
        return showError(element, url, null, error);
      }
    );
    running.set(element, promise);
    return promise;
  }

  function placeholdersIn(root, includeRoot) {
    const found = [];
    if (includeRoot && root.nodeType === 1 && root.hasAttribute("data-fragment")) {
      found.push(root);
    }
    const nested = root.querySelectorAll("[data-fragment]");
    for (let i = 0; i < nested.length; i += 1) {
      found.push(nested[i]);
    }
    // A streamed page's skeleton is the shadow root of its <wl-page>.
    const pages = root.querySelectorAll("wl-page");
    for (let i = 0; i < pages.length; i += 1) {
      if (pages[i].shadowRoot) {
        found.push.apply(found, placeholdersIn(pages[i].shadowRoot, false));
      }
    }
    return found;
  }

  // The chunk the server streamed for a placeholder of a streamed page: a child of the shadow
  // host that fills the placeholder's <slot>.
  function streamedChunk(element) {
    const name = element.getAttribute("data-fragment-slot");
    const root = element.getRootNode();
    if (!name || !root.host) {
      return null;
    }
    const children = root.host.children;
    for (let i = 0; i < children.length; i += 1) {
      if (children[i].getAttribute("slot") === name) {
        return children[i];
      }
    }
    return null;
  }

  // Takes over what a streamed page's response already showed: a fragment written into it (or
  // inlined in its skeleton) counts as loaded, an error box as an error; what the response
  // left pending (past the page's deadline) is loaded here like any placeholder.
  function adoptStreamed(element) {
    const url = element.getAttribute("data-fragment");
    const chunk = streamedChunk(element);
    const shown = chunk || element;
    const state = shown.getAttribute("data-fragment-state");
    const cacheStatus = shown.getAttribute("data-cache-status") || "";
    if (state === "loaded" || state === "error") {
      started.add(element);
      element.setAttribute("data-fragment-state", state);
      element.setAttribute("aria-busy", "false");
      if (cacheStatus) {
        element.setAttribute("data-cache-status", cacheStatus);
      }
      if (state === "loaded") {
        dispatch(element, "workerless:load", { url: url, status: 200, cacheStatus: cacheStatus, element: element });
      } else {
        const status = parseInt((/fwd-status=(\d+)/.exec(cacheStatus) || [])[1], 10) || null;
        dispatch(element, "workerless:error", { url: url, status: status, error: null, element: element });
      }
      return;
    }
    if (chunk) {
      chunk.remove(); // its link is for pages without JavaScript; the spinner shows again
    }
  }

  // The placeholder a streamed error box (outside the shadow root) stands for.
  function placeholderOfChunk(chunk) {
    const host = chunk.parentElement;
    const name = chunk.getAttribute("slot");
    if (!host || !host.shadowRoot || !name) {
      return null;
    }
    return host.shadowRoot.querySelector('[data-fragment-slot="' + CSS.escape(name) + '"]');
  }

  function loadNew(elements) {
    return Promise.all(
      elements
        .filter(function (element) {
          return !started.has(element) || running.has(element);
        })
        .map(load)
    );
  }

  function loadDescendants(element) {
    loadNew(placeholdersIn(element, false));
  }

  // Loads the placeholders under root that have not been loaded yet (running ones
  // are joined, finished ones are left alone; use load(element) to reload one).
  function loadAll(root) {
    return loadNew(placeholdersIn(root || document, true));
  }

  // Delegated on document so Retry buttons inside content inserted later work too.
  document.addEventListener("click", function (event) {
    // The first node of the path: inside a shadow root, event.target is only its host.
    const target = event.composedPath()[0];
    if (!target || typeof target.closest !== "function") {
      return;
    }
    const button = target.closest("[data-fragment-retry]");
    if (!button) {
      return;
    }
    const chunk = button.closest("[slot]");
    const element = button.closest("[data-fragment]") || (chunk && placeholderOfChunk(chunk));
    if (!element || running.has(element)) {
      return;
    }
    event.preventDefault();
    if (chunk && !element.contains(chunk)) {
      chunk.remove();
    }
    const markup = initialMarkup.get(element);
    element.innerHTML = markup !== undefined ? markup : SPINNER_HTML;
    load(element);
  });

  window.workerless = {
    load: load,
    loadAll: function (root) {
      return loadAll(root === undefined ? document : root);
    },
    version: VERSION,
  };

  function start() {
    const streamed = placeholdersIn(document, false).filter(function (element) {
      return element.hasAttribute("data-fragment-slot");
    });
    streamed.forEach(adoptStreamed);
    loadAll(document);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start, { once: true });
  } else {
    start();
  }
})();
