// farm-adapters monitor: live updates by polling the monitor's own JSON (no other
// origin, no inline script). Text from jobs arrives escaped by the server inside the
// HTML fragments; the log is added as text, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const interval = Math.max(0.2, parseFloat(body.dataset.interval || "2")) * 1000;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function swap(id, html) {
    const el = document.getElementById(id);
    if (el && html !== undefined && el.dataset.html !== html) {
      el.innerHTML = html;
      el.dataset.html = html;
    }
  }

  function setUpdated(text) {
    const el = document.getElementById("updated");
    if (el && text) el.textContent = text;
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }

  function every(fn) {
    let busy = false;
    async function tick() {
      if (!busy) {
        busy = true;
        try {
          await fn();
        } catch (err) {
          setUpdated("monitor not answering: " + err.message);
        } finally {
          busy = false;
        }
      }
      setTimeout(tick, interval);
    }
    setTimeout(tick, 0);
  }

  function jobPath(kind) {
    return "/" + kind + "/" + encodeURIComponent(body.dataset.target) + "/" +
      encodeURIComponent(body.dataset.job);
  }

  if (page === "jobs") {
    every(async () => {
      const data = await getJSON("/api/jobs" + window.location.search);
      swap("rows", data.rows);
      swap("marks", data.marks);
      swap("problems", data.problems);
      setUpdated(data.updated);
    });
  } else if (page === "targets") {
    every(async () => {
      const data = await getJSON("/api/targets");
      swap("targets", data.rows);
      setUpdated(data.updated);
    });
  } else if (page === "job") {
    const log = document.getElementById("log");
    const logState = document.getElementById("log-state");
    let offset = 0;
    every(async () => {
      const data = await getJSON(jobPath("api/job"));
      for (const part of ["summary", "actions", "tasks", "outputs", "problems"]) {
        swap(part, data[part]);
      }
      const chunk = await getJSON(jobPath("api/log") + "?offset=" + offset);
      if (chunk.text) {
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        if (chunk.dropped) log.textContent = "[older lines dropped]\n";
        log.append(document.createTextNode(chunk.text));
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
      offset = chunk.next;
      logState.textContent = chunk.complete ? "(complete)" : "(live)";
    });

    document.getElementById("actions").addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const action = button.dataset.action;
      if (action === "delete" && !window.confirm("Delete this job, its folder and logs?")) return;
      const payload = {};
      if (action === "priority") {
        payload.value = parseInt(document.getElementById("priority-value").value, 10);
      }
      const result = document.getElementById("action-result");
      button.disabled = true;
      try {
        const response = await fetch(
          "/api/action/" + action + "/" + encodeURIComponent(body.dataset.target) + "/" +
            encodeURIComponent(body.dataset.job),
          {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
            body: JSON.stringify(payload),
          }
        );
        const data = await response.json();
        result.textContent = data.ok ? data.message : "refused: " + data.error;
        result.className = "action-result " + (data.ok ? "ok" : "error");
        if (data.ok && action === "delete") window.location.assign("/");
      } catch (err) {
        result.textContent = "failed: " + err.message;
        result.className = "action-result error";
      } finally {
        button.disabled = false;
      }
    });
  }
})();
