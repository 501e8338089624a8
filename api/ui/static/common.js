"use strict";
// What both pages share: the API client (with the key asked for once per tab), polling,
// formatting and small DOM helpers. Text always goes in as text, never as HTML.
(function () {
  const KEY_NAME = "orchestrator.apiKey";
  const POLL_MS = 5000;
  const match = location.pathname.match(/^(.*?)\/ui(\/|$)/);
  const base = match ? match[1] : "";

  class ApiError extends Error {
    constructor(status, detail, errorType) {
      super(detail);
      this.status = status;
      this.errorType = errorType;
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // replaceChildren, leaving out the null, undefined and false of conditional parts.
  function fill(node, ...children) {
    node.replaceChildren(
      ...children.flat().filter((c) => c !== null && c !== undefined && c !== false)
        .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))))
    );
    return node;
  }

  // --- the API key: asked for on the first 401, kept for this tab only ---------------------
  let asking = null;

  function keyDialog() {
    let dialog = document.getElementById("key-dialog");
    if (dialog) return dialog;
    dialog = el(
      "dialog",
      { id: "key-dialog", "aria-labelledby": "key-title" },
      el(
        "form",
        { id: "key-form" },
        el("h2", { id: "key-title" }, "API key"),
        el("p", { id: "key-why" }),
        el("label", { for: "key-input" }, "Key"),
        el("input", { id: "key-input", type: "password", autocomplete: "off", required: true }),
        el("div", { className: "dialog-buttons" }, el("button", { type: "submit", className: "primary" }, "Use this key")),
        el("p", { className: "muted" }, "Kept in this browser tab only, sent as the X-API-Key header.")
      )
    );
    // The pages cannot work without a key: Escape does not close the dialog.
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    document.body.append(dialog);
    return dialog;
  }

  function askForKey(why) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const dialog = keyDialog();
      document.getElementById("key-why").textContent = why;
      const form = document.getElementById("key-form");
      const input = document.getElementById("key-input");
      input.value = "";
      form.onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY_NAME, input.value.trim());
        dialog.close();
        asking = null;
        resolve();
      };
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  async function api(path, options = {}) {
    const { method = "GET", body, text = false } = options;
    for (;;) {
      const headers = { Accept: text ? "text/plain" : "application/json" };
      const key = sessionStorage.getItem(KEY_NAME);
      if (key) headers["X-API-Key"] = key;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
      if (response.status === 401) {
        await askForKey(key ? "That key was refused; try another." : "This orchestrator asks for an API key.");
        continue;
      }
      if (!response.ok) {
        let detail = response.statusText;
        let errorType = "";
        try {
          const problem = await response.json();
          detail = problem.detail || detail;
          errorType = problem.error_type || "";
        } catch (ignored) {
          // not JSON: keep the status text
        }
        throw new ApiError(response.status, detail, errorType);
      }
      if (response.status === 204) return null;
      return text ? response.text() : response.json();
    }
  }

  // The role decides which controls show; without roles (no /whoami) everyone operates.
  async function role() {
    try {
      const me = await api("/whoami");
      return (me && me.role) || null;
    } catch (error) {
      return null;
    }
  }

  // --- polling: one tick at a time, paused while the tab is hidden --------------------------
  function poll(tick, interval = POLL_MS) {
    let timer = null;
    let running = false;
    let again = false;
    async function run() {
      if (running) {
        again = true; // asked for while a tick is under way: one more right after it
        return;
      }
      running = true;
      clearTimeout(timer);
      try {
        await tick();
      } catch (error) {
        say(`Could not update: ${error.message}`, true);
      } finally {
        running = false;
        if (again) {
          again = false;
          setTimeout(run, 0);
        } else if (!document.hidden) {
          timer = setTimeout(run, interval);
        }
      }
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) run();
    });
    run();
    return run;
  }

  function say(text, isError = false) {
    const message = document.getElementById("message");
    if (!message) return;
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  // --- formatting --------------------------------------------------------------------------
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function localTime(iso) {
    return iso ? new Date(iso).toLocaleString() : "—";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return `${seconds} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  function fromNow(iso) {
    if (!iso) return "—";
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
    const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
    }
    return relative.format(Math.round(seconds), "second");
  }

  function timeEl(iso, text) {
    return iso ? el("time", { datetime: iso, title: localTime(iso) }, text || fromNow(iso)) : "—";
  }

  function bytes(size) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = size;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }

  const ACTIVE = new Set(["running", "retrying", "queued"]);

  function badge(status) {
    return el("span", { className: `badge status-${status}` }, status);
  }

  // Remaining time from the pace so far: the run's elapsed time per step done.
  function eta(progress, startedAt) {
    if (!progress || !progress.total || !progress.step || !startedAt) return null;
    const elapsed = (Date.now() - new Date(startedAt).getTime()) / 1000;
    if (elapsed <= 0 || progress.step >= progress.total) return null;
    return (elapsed * (progress.total - progress.step)) / progress.step;
  }

  function progressView(progress, startedAt, active) {
    if (!progress || (progress.step === null && !Object.keys(progress.metrics || {}).length)) {
      return el("span", { className: "muted" }, "—");
    }
    const parts = [];
    if (progress.step !== null && progress.total) parts.push(`${progress.step} / ${progress.total}`);
    else if (progress.step !== null) parts.push(`step ${progress.step}`);
    if (progress.percent !== null && progress.percent !== undefined) parts.push(`${progress.percent}%`);
    const remaining = active ? eta(progress, startedAt) : null;
    if (remaining !== null) parts.push(`ETA ${duration(remaining)}`);
    const label = parts.join(" · ");
    const bar =
      progress.percent !== null && progress.percent !== undefined
        ? el("progress", { max: 100, value: progress.percent, "aria-label": `Progress ${label}` })
        : null;
    return el("div", { className: "progress" }, bar, el("span", { className: "progress-text" }, label));
  }

  window.Dash = {
    api, ApiError, role, poll, say, el, fill, badge, localTime, duration, fromNow, timeEl, bytes,
    eta, progressView, ACTIVE, base,
  };
})();
