/*! workerless-htmx.js 0.1.0 - the htmx 2 extension for workerless fragment routes: hx-ext="workerless". */
(function () {
  "use strict";

  if (typeof htmx === "undefined") {
    console.warn("workerless-htmx.js: load htmx before this file");
    return;
  }

  const RETRY_AFTER_DEFAULT_S = 1;
  const RETRY_AFTER_MAX_S = 60;

  // Slots showing an error box -> the request to repeat on Retry and the markup to put back.
  const failed = new WeakMap();

  function fromWorkerless(xhr) {
    return /^workerless\b/.test(xhr.getResponseHeader("Cache-Status") || "");
  }

  function retryAfterMs(xhr) {
    const value = xhr.getResponseHeader("Retry-After");
    if (value === null || !/^\s*\d+\s*$/.test(value)) {
      return RETRY_AFTER_DEFAULT_S * 1000;
    }
    return Math.min(parseInt(value, 10), RETRY_AFTER_MAX_S) * 1000;
  }

  // A 202: the server goes on computing, so ask again (that request is held until it is done).
  function askAgainLater(detail) {
    const source = detail.elt;
    const target = detail.target;
    const path = detail.requestConfig.path;
    // htmx drops its request class when this request ends; keep the spinner on meanwhile.
    source.classList.add(htmx.config.requestClass);
    source.setAttribute("data-workerless-state", "pending");
    setTimeout(function () {
      source.classList.remove(htmx.config.requestClass);
      source.removeAttribute("data-workerless-state");
      if (source.isConnected && target.isConnected) {
        htmx.ajax("GET", path, { source: source, target: target });
      }
    }, retryAfterMs(detail.xhr));
  }

  // A 5xx from workerless carries an error box: swap it into the slot (htmx 2 swaps no 5xx).
  function showErrorBox(detail) {
    const target = detail.target;
    if (!failed.has(target)) {
      failed.set(target, { source: detail.elt, path: detail.requestConfig.path, markup: target.innerHTML });
    }
    detail.shouldSwap = true;
    detail.isError = false;
    detail.swapOverride = "innerHTML";
    detail.selectOverride = "unset";
  }

  function retry(event) {
    const button = event.target && typeof event.target.closest === "function"
      ? event.target.closest("[data-workerless-retry]")
      : null;
    if (!button) {
      return;
    }
    for (let slot = button.parentElement; slot !== null; slot = slot.parentElement) {
      const request = failed.get(slot);
      if (request) {
        event.preventDefault();
        failed.delete(slot);
        slot.innerHTML = request.markup;
        htmx.process(slot);
        htmx.ajax("GET", request.path, { source: request.source, target: slot });
        return;
      }
    }
  }

  htmx.defineExtension("workerless", {
    init: function () {
      document.addEventListener("click", retry);
    },
    onEvent: function (name, event) {
      if (name !== "htmx:beforeSwap" || !fromWorkerless(event.detail.xhr)) {
        return true;
      }
      const status = event.detail.xhr.status;
      if (status === 202) {
        event.detail.shouldSwap = false;
        askAgainLater(event.detail);
      } else if (status >= 500) {
        showErrorBox(event.detail);
      }
      return true;
    },
  });
})();
