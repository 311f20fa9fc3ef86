/* Demo page only: cache-source badges and the two demo controls. */
(function () {
  "use strict";

  function describe(cacheStatus) {
    // Order matters: a stale answer is also a hit, a collapsed request also a fwd=miss.
    if (cacheStatus.indexOf("detail=stale-if-error") !== -1) {
      return { source: "stale", text: "stale: its refresh failed" };
    }
    if (cacheStatus.indexOf("fwd=stale") !== -1) {
      return { source: "stale", text: "stale, refreshing" };
    }
    if (/;\s*hit\b/.test(cacheStatus)) {
      return { source: "hit", text: "from cache" };
    }
    if (cacheStatus.indexOf("collapsed") !== -1) {
      return { source: "collapsed", text: "joined a running computation" };
    }
    if (cacheStatus.indexOf("fwd=miss") !== -1) {
      return { source: "miss", text: "computed now" };
    }
    return { source: "unknown", text: cacheStatus ? "Cache-Status: " + cacheStatus : "loaded" };
  }

  // The badge sits in the card but outside the placeholder, which gets overwritten.
  // Only the card's own placeholder counts: events from nested fragments bubble up too.
  function badgeFor(element) {
    const card = element.parentElement;
    return card && card.classList.contains("demo-card") ? card.querySelector(".demo-badge") : null;
  }

  function setBadge(element, source, text, title) {
    const badge = badgeFor(element);
    if (!badge) {
      return;
    }
    badge.textContent = text;
    badge.setAttribute("data-source", source);
    if (title) {
      badge.title = title;
    } else {
      badge.removeAttribute("title");
    }
  }

  // How many 202s each placeholder got before its content: after one, the final answer
  // joins the computation that this very page started, which "collapsed" would hide.
  const accepted = new WeakMap();

  function showSource(element) {
    const cacheStatus = element.getAttribute("data-cache-status") || "";
    const info = describe(cacheStatus);
    const waits = accepted.get(element) || 0;
    accepted.delete(element);
    let text = info.text;
    if (waits > 0) {
      const after = ", after " + (waits === 1 ? "a 202" : waits + " \u00d7 202");
      // Asked again just after it finished: the answer came from the cache, still say so.
      text = (info.source === "hit" ? info.text : "computed now") + after;
    }
    setBadge(element, info.source, text, cacheStatus ? "Cache-Status: " + cacheStatus : "");
  }

  document.addEventListener("workerless:load", function (event) {
    showSource(event.detail.element);
  });

  document.addEventListener("workerless:pending", function (event) {
    const detail = event.detail;
    accepted.set(detail.element, (accepted.get(detail.element) || 0) + 1);
    setBadge(detail.element, "pending", "202: still computing, asking again in " + detail.retryAfter + " s");
  });

  document.addEventListener("workerless:error", function (event) {
    const detail = event.detail;
    accepted.delete(detail.element);
    let text = "failed: network error";
    if (detail.status) {
      text = "failed with HTTP " + detail.status;
    } else if (detail.error && detail.error.name === "TimeoutError") {
      text = "gave up: took too long";
    }
    setBadge(detail.element, "error", text);
  });

  document.addEventListener("click", function (event) {
    const target = event.composedPath()[0];
    if (target && typeof target.closest === "function" && target.closest("[data-fragment-retry]")) {
      const element = target.closest("[data-fragment]");
      if (element) {
        setBadge(element, "", "");
      }
    }
  });

  // This script may run after a fast fragment already arrived; catch up on those.
  // The streamed page's cards are in the shadow root of its <wl-page>.
  const page = document.querySelector("wl-page");
  const root = page && page.shadowRoot ? page.shadowRoot : document;

  const loaded = root.querySelectorAll('.demo-card [data-fragment-state="loaded"]');
  for (let i = 0; i < loaded.length; i += 1) {
    showSource(loaded[i]);
  }
  const failed = root.querySelectorAll('.demo-card [data-fragment-state="error"]');
  for (let i = 0; i < failed.length; i += 1) {
    setBadge(failed[i], "error", "failed");
  }

  const status = root.getElementById("demo-status");

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  async function postJson(url, body) {
    const init = { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (!response.ok) {
      throw new Error("HTTP " + response.status);
    }
    // The JSON answer carries nothing the page needs, so it is not parsed.
    return response;
  }

  const clearButton = root.getElementById("clear-cache");
  if (clearButton) {
    clearButton.addEventListener("click", async function () {
      clearButton.disabled = true;
      say("Clearing the cache\u2026");
      try {
        await postJson(clearButton.getAttribute("data-url") || "/demo/clear-cache");
        location.reload();
      } catch (error) {
        say("Could not clear the cache (" + error.message + ").");
        clearButton.disabled = false;
      }
    });
  }

  const failingToggle = root.getElementById("failing-toggle");
  if (failingToggle) {
    failingToggle.addEventListener("change", async function () {
      const fail = failingToggle.checked;
      failingToggle.disabled = true;
      try {
        await postJson(failingToggle.getAttribute("data-url") || "/demo/failing", { fail: fail });
        say(fail
          ? "The failing fragment now fails; clear the cache to see it."
          : "The failing fragment now works; press its Retry (or clear the cache) to see it.");
      } catch (error) {
        // The server did not take it: show the state it still has.
        failingToggle.checked = !fail;
        say("Could not change the setting (" + error.message + ").");
      } finally {
        failingToggle.disabled = false;
      }
    });
  }
})();
