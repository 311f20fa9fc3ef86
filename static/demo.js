/* Demo page only: cache-source badges and the two demo controls. */
(function () {
  "use strict";

  function describe(cacheStatus) {
    // Order matters: a collapsed request is also a fwd=miss.
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

  function showSource(element) {
    const cacheStatus = element.getAttribute("data-cache-status") || "";
    const info = describe(cacheStatus);
    setBadge(element, info.source, info.text, cacheStatus ? "Cache-Status: " + cacheStatus : "");
  }

  document.addEventListener("workerless:load", function (event) {
    showSource(event.detail.element);
  });

  document.addEventListener("workerless:pending", function (event) {
    const detail = event.detail;
    setBadge(detail.element, "pending", "202: still computing, asking again in " + detail.retryAfter + " s");
  });

  document.addEventListener("workerless:error", function (event) {
    const detail = event.detail;
    let text = "failed: network error";
    if (detail.status) {
      text = "failed with HTTP " + detail.status;
    } else if (detail.error && detail.error.name === "TimeoutError") {
      text = "gave up: took too long";
    }
    setBadge(detail.element, "error", text);
  });

  document.addEventListener("click", function (event) {
    const target = event.target;
    if (target && typeof target.closest === "function" && target.closest("[data-fragment-retry]")) {
      const element = target.closest("[data-fragment]");
      if (element) {
        setBadge(element, "", "");
      }
    }
  });

  // This script may run after a fast fragment already arrived; catch up on those.
  const loaded = document.querySelectorAll('.demo-card [data-fragment-state="loaded"]');
  for (let i = 0; i < loaded.length; i += 1) {
    showSource(loaded[i]);
  }

  const status = document.getElementById("demo-status");

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

  const clearButton = document.getElementById("clear-cache");
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

  const failingToggle = document.getElementById("failing-toggle");
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
