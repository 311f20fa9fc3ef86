// The queue page: reads /stats/ every second and the dead letters of each queue, renders them
// with textContent only (job bodies are user data), and sends retry/delete for dead jobs.
(() => {
  "use strict";
  const body = document.body;
  const api = body.dataset.api;
  const open = body.dataset.open === "true";
  const form = document.getElementById("token-form");
  const tokenInput = document.getElementById("token");
  const tokenError = document.getElementById("token-error");
  const queuesBody = document.querySelector("#queues tbody");
  const deadBody = document.querySelector("#dead tbody");
  const noQueues = document.getElementById("no-queues");
  const updated = document.getElementById("updated");
  const INTERVAL_MS = 1000;
  let token = sessionStorage.getItem("workerless-queue-token") || "";
  let timer = null;

  function headers() {
    return open ? {} : { Authorization: `Bearer ${token}` };
  }

  async function call(method, path) {
    const response = await fetch(api + path, { method, headers: headers(), cache: "no-store" });
    if (response.status === 401) {
      askToken("The token was refused.");
      return null;
    }
    if (!response.ok) {
      throw new Error(`${method} ${path}: ${response.status}`);
    }
    return response.json();
  }

  function askToken(message) {
    clearTimeout(timer);
    token = "";
    sessionStorage.removeItem("workerless-queue-token");
    tokenError.textContent = message;
    form.hidden = false;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function age(seconds) {
    if (seconds === null) return "–";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    return `${Math.floor(seconds / 3600)} h`;
  }

  function renderQueues(stats) {
    const rows = stats.queues.map((q) => {
      const row = document.createElement("tr");
      row.dataset.queue = q.queue;
      cell(row, q.queue, "name");
      if (q.error) {
        cell(row, q.error, "stopped").colSpan = 10;
        return row;
      }
      cell(row, q.stopped ? "stopped" : "started", q.stopped ? "stopped" : "started");
      cell(row, String(q.length)).dataset.field = "length";
      cell(row, String(q.pending)).dataset.field = "pending";
      cell(row, String(q.delayed)).dataset.field = "delayed";
      cell(row, String(q.dead)).dataset.field = "dead";
      cell(row, String(q.consumers.waiting)).dataset.field = "waiting";
      cell(row, age(q.oldest_age)).dataset.field = "oldest";
      cell(row, q.rates.enqueued.toFixed(1)).dataset.field = "enqueued-rate";
      cell(row, q.rates.done.toFixed(1)).dataset.field = "done-rate";
      cell(row, String(q.counts.done || 0)).dataset.field = "done";
      return row;
    });
    queuesBody.replaceChildren(...rows);
    noQueues.hidden = rows.length > 0;
  }

  function button(label, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await action();
      } catch (error) {
        tokenError.textContent = String(error.message);
      }
      refresh();
    });
    return b;
  }

  async function renderDead(stats) {
    const rows = [];
    for (const q of stats.queues.filter((q) => !q.error && q.dead > 0)) {
      const listing = await call("GET", `dead/${encodeURIComponent(q.queue)}`);
      if (listing === null) return;
      for (const job of listing.dead) {
        const row = document.createElement("tr");
        row.dataset.job = job.id;
        cell(row, q.queue);
        cell(row, job.id, "id");
        cell(row, String(job.attempts));
        cell(row, job.error, "error");
        cell(row, job.job, "body");
        const actions = cell(row, "");
        const path = `dead/${encodeURIComponent(q.queue)}/${job.id}`;
        // A dead fragment job is not retried: the next request for its URL queues a new one.
        if (job.kind !== "fragment") actions.appendChild(button("Retry", () => call("POST", path)));
        actions.appendChild(button("Delete", () => call("DELETE", path)));
        rows.push(row);
      }
    }
    deadBody.replaceChildren(...rows);
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const stats = await call("GET", "stats/");
      if (stats === null) return;
      renderQueues(stats);
      await renderDead(stats);
      updated.textContent = new Date().toLocaleTimeString();
      updated.dateTime = new Date().toISOString();
      body.classList.remove("offline");
    } catch (error) {
      body.classList.add("offline");
      updated.textContent = `failed (${error.message}), retrying`;
    }
    timer = setTimeout(refresh, INTERVAL_MS);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    token = tokenInput.value.trim();
    sessionStorage.setItem("workerless-queue-token", token);
    form.hidden = true;
    tokenError.textContent = "";
    refresh();
  });

  if (open || token) {
    refresh();
  } else {
    askToken("");
  }
})();
