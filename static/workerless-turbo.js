/*! workerless-turbo.js 0.1.0 - Turbo 8 frames on workerless fragment routes: keeps the spinner through a 202 and retries. */
(function () {
  "use strict";

  if (window.workerlessTurbo) {
    return;
  }

  const RETRY_AFTER_DEFAULT_S = 1;
  const RETRY_AFTER_MAX_S = 60;

  // Each frame's markup before its first load (its spinner), put back when Retry is clicked.
  const initialMarkup = new WeakMap();

  function frameOf(event) {
    const target = event.target;
    return target instanceof Element && target.localName === "turbo-frame" ? target : null;
  }

  function retryAfterMs(value) {
    if (value === null || !/^\s*\d+\s*$/.test(value)) {
      return RETRY_AFTER_DEFAULT_S * 1000;
    }
    return Math.min(parseInt(value, 10), RETRY_AFTER_MAX_S) * 1000;
  }

  document.addEventListener("turbo:before-fetch-request", function (event) {
    const frame = frameOf(event);
    if (frame && !initialMarkup.has(frame)) {
      initialMarkup.set(frame, frame.innerHTML);
    }
  });

  // A 202: the server goes on computing. Keep what the frame shows and load it again later
  // (that request is held until the fragment is ready).
  document.addEventListener("turbo:before-fetch-response", function (event) {
    const frame = frameOf(event);
    const response = event.detail.fetchResponse.response;
    if (!frame || response.status !== 202 || !/^workerless\b/.test(response.headers.get("Cache-Status") || "")) {
      return;
    }
    event.preventDefault();
    frame.setAttribute("data-workerless-state", "pending");
    setTimeout(function () {
      frame.removeAttribute("data-workerless-state");
      if (frame.isConnected) {
        frame.reload();
      }
    }, retryAfterMs(response.headers.get("Retry-After")));
  });

  // Retry in an error frame: put the spinner back and reload the frame. Captured before
  // Turbo sees the click, which would otherwise navigate the frame to the link (same URL).
  document.addEventListener(
    "click",
    function (event) {
      const link = event.target instanceof Element ? event.target.closest("[data-workerless-retry]") : null;
      const frame = link ? link.closest("turbo-frame") : null;
      if (!frame) {
        return;
      }
      event.preventDefault();
      if (initialMarkup.has(frame)) {
        frame.innerHTML = initialMarkup.get(frame);
      }
      frame.reload();
    },
    true
  );

  window.workerlessTurbo = { version: "0.1.0" };
})();
