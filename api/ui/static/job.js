"use strict";
// /ui/jobs/{job_id}: one job's spec, schedule, curves, runs, checkpoints, log tail, controls.
(function () {
  const { api, role, poll, say, el, fill, badge, timeEl, localTime, duration, bytes, progressView, ACTIVE } =
    window.Dash;
  const jobId = decodeURIComponent(location.pathname.replace(/^.*?\/ui\/jobs\//, "").replace(/\/$/, ""));
  const path = `/jobs/${encodeURIComponent(jobId)}`;
  const LOG_LINES = 200;
  const OVERLAID_RUNS = 3;
  const state = { job: null, runs: [], selected: "", metrics: new Map(), logRun: undefined, ticks: 0, checkpointsKey: "" };
  const runSelect = document.getElementById("run-select");
  const overlay = document.getElementById("overlay");

  const ACTIONS = {
    trigger: { ask: (j) => `Start a new run of ${j.name} now?`, done: "A new run was started." },
    retry: { ask: (j) => `Reset the retries of ${j.name} and start a new run now?`, done: "Retrying: a new run starts." },
    cancel: {
      ask: (j) => `Stop the running run of ${j.name}? The trainer gets SIGTERM, then SIGKILL after the grace period.`,
      done: "The run was cancelled.",
    },
    pause: { ask: (j) => `Pause the schedule of ${j.name}? Runs already going keep going.`, done: "The schedule is paused." },
    resume: { ask: (j) => `Resume the schedule of ${j.name}?`, done: "The schedule is resumed." },
  };

  function shortRun(runId) {
    return runId.startsWith(`${jobId}-`) ? runId.slice(jobId.length + 1) : runId;
  }

  function confirmAction(text, label) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    const yes = document.getElementById("confirm-yes");
    const no = document.getElementById("confirm-no");
    yes.textContent = label;
    return new Promise((resolve) => {
      const finish = (answer) => {
        yes.onclick = no.onclick = dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      yes.onclick = () => finish(true);
      no.onclick = () => finish(false);
      dialog.onclose = () => finish(false);
      dialog.showModal();
      no.focus(); // the safe answer is the default one
    });
  }

  async function act(action, button) {
    const job = state.job;
    if (!job || !(await confirmAction(ACTIONS[action].ask(job), button.textContent))) return;
    const buttons = document.querySelectorAll("#controls button");
    buttons.forEach((b) => (b.disabled = true));
    say(action === "cancel" ? "Cancelling: waiting for the trainer to stop…" : "Working…");
    try {
      const body = action === "pause" || action === "resume" ? { note: `${action}d from the dashboard` } : undefined;
      await api(`${path}/${action}`, { method: "POST", body });
      say(ACTIONS[action].done);
    } catch (error) {
      say(`${error.status || ""} ${error.errorType || "Error"}: ${error.message}`, true);
    }
    refresh();
  }

  function showControls(job) {
    const active = ACTIVE.has(job.status);
    const enabled = {
      trigger: !active, retry: !active, cancel: active,
      pause: !job.paused, resume: job.paused,
    };
    for (const button of document.querySelectorAll("#controls button")) {
      const action = button.dataset.action;
      button.hidden = (action === "pause" && job.paused) || (action === "resume" && !job.paused);
      button.disabled = !enabled[action];
    }
  }

  function showSummary(job, runs) {
    document.title = `${job.name} · Training orchestrator`;
    document.getElementById("title").textContent = job.name;
    const latest = runs[0];
    const links = [];
    if (latest && latest.temporal_ui_url) {
      links.push(el("a", { href: latest.temporal_ui_url, target: "_blank", rel: "noopener noreferrer" }, "latest run in the Temporal UI"));
      const schedule = latest.temporal_ui_url.replace(/\/workflows\/[^/]*$/, `/schedules/${encodeURIComponent(jobId)}`);
      links.push(" · ", el("a", { href: schedule, target: "_blank", rel: "noopener noreferrer" }, "schedule in the Temporal UI"));
    }
    fill(document.getElementById("summary"), 
      badge(job.status),
      job.paused ? el("span", { className: "badge paused" }, "paused") : null,
      el("span", { className: "mono" }, ` ${job.job_id} `),
      job.error_message ? el("span", { className: "error-text" }, ` ${job.error_message} `) : null,
      ...links
    );
  }

  function showProgress(job) {
    const progress = job.progress;
    const metrics = Object.entries((progress && progress.metrics) || {});
    fill(document.getElementById("progress"), 
      progressView(progress, job.started_at, ACTIVE.has(job.status)),
      progress && progress.epoch !== null ? el("p", null, `Epoch ${progress.epoch}`) : null,
      metrics.length
        ? el("dl", { className: "metrics" }, metrics.flatMap(([name, value]) => [el("dt", null, name), el("dd", null, String(value))]))
        : null,
      progress && progress.updated_at ? el("p", { className: "muted" }, "Reported ", timeEl(progress.updated_at)) : null
    );
  }

  function showSpec(job) {
    const entries = [
      ["Image", job.image],
      ["Command", JSON.stringify(job.command)],
      ["Schedule", job.schedule ? `${job.schedule} (${job.timezone})` : "one-off (no cron)"],
      ["Paused", job.paused ? "yes" : "no"],
      ["Next firings", (job.next_run_times || []).length
        ? el("ul", null, job.next_run_times.map((t) => el("li", null, timeEl(t.utc, localTime(t.utc)))))
        : "—"],
      ["Overlap policy", job.overlap_policy],
      ["Retries", `${job.retry_count} of ${job.max_retries}`],
      ["Resume policy", job.resume_policy],
      ["Timeout", job.timeout_seconds ? duration(job.timeout_seconds) : "none"],
      ["Resources", job.resources ? JSON.stringify(job.resources) : "—"],
      ["Checkpoint path", job.checkpoint_path],
      ["Environment", Object.keys(job.env).length ? Object.entries(job.env).map(([k, v]) => `${k}=${v}`).join("\n") : "—"],
      ["Secret names", job.secret_env.length ? job.secret_env.join(", ") : "—"],
      ["Created", localTime(job.created_at)],
    ];
    fill(document.getElementById("spec"), 
      ...entries.flatMap(([term, value]) => [el("dt", null, term), el("dd", { className: "mono" }, value)])
    );
  }

  function showRuns(runs) {
    const rows = runs.map((run) => {
      const end = run.completed_at ? new Date(run.completed_at) : new Date();
      const attempts = run.attempts.map((a) => `#${a.attempt}: ${a.exit_code === null ? "—" : `exit ${a.exit_code}`}`).join(", ");
      return el(
        "tr",
        { "data-run-id": run.run_id },
        el("td", { "data-label": "Run" },
          el("button", { type: "button", className: "link", title: run.run_id, onclick: () => select(run.run_id) }, shortRun(run.run_id))),
        el("td", { "data-label": "Trigger" }, run.trigger),
        el("td", { "data-label": "Status" }, badge(run.status), run.error_message ? el("div", { className: "error-text" }, run.error_message.slice(0, 200)) : null),
        el("td", { "data-label": "Started" }, timeEl(run.started_at)),
        el("td", { "data-label": "Duration" }, duration((end - new Date(run.started_at)) / 1000)),
        el("td", { "data-label": "Attempts" }, attempts || "—"),
        el("td", { "data-label": "Temporal" }, el("a", { href: run.temporal_ui_url, target: "_blank", rel: "noopener noreferrer" }, "open"))
      );
    });
    fill(document.querySelector("#runs tbody"), ...rows);
    const chosen = state.selected || (runs[0] && runs[0].run_id) || "";
    fill(runSelect, ...runs.map((run, i) =>
      el("option", { value: run.run_id, selected: run.run_id === chosen }, `${shortRun(run.run_id)} · ${run.trigger} · ${run.status}${i === 0 ? " (latest)" : ""}`)));
  }

  async function showCheckpoints() {
    const listing = await api(`${path}/checkpoints`);
    const latest = listing.latest && listing.latest.sha256;
    const rows = listing.checkpoints.slice(0, 50).map((c) =>
      el("tr", null,
        el("td", { "data-label": "Path", className: "mono" }, c.path, c.sha256 === latest ? el("span", { className: "badge" }, "latest") : null),
        el("td", { "data-label": "Step" }, c.step === null ? "—" : String(c.step)),
        el("td", { "data-label": "Size" }, bytes(c.size_bytes)),
        el("td", { "data-label": "Run", className: "mono" }, `${shortRun(c.run_id)} #${c.attempt}`),
        el("td", { "data-label": "Recorded" }, timeEl(c.created_at))));
    fill(document.querySelector("#checkpoints tbody"), 
      ...(rows.length ? rows : [el("tr", null, el("td", { colspan: 5, className: "muted" }, "No checkpoints recorded."))]));
  }

  async function showLog(job) {
    const active = ACTIVE.has(job.status);
    if (!active && state.logRun === job.latest_run_id) return;
    const log = document.getElementById("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = (await api(`${path}/logs?tail=${LOG_LINES}`, { text: true })) || "(no output yet)";
    if (atBottom) log.scrollTop = log.scrollHeight;
    state.logRun = active ? null : job.latest_run_id;
  }

  async function metricsOf(run) {
    const cached = state.metrics.get(run.run_id);
    if (cached && cached.final) return cached.data;
    const data = await api(`${path}/runs/${encodeURIComponent(run.run_id)}/metrics`);
    state.metrics.set(run.run_id, { data, final: ["completed", "failed", "cancelled"].includes(run.status) });
    return data;
  }

  async function showCurves() {
    const index = Math.max(0, state.runs.findIndex((run) => run.run_id === (state.selected || (state.runs[0] || {}).run_id)));
    const chosen = state.runs[index];
    if (!chosen) return window.Charts.render(document.getElementById("charts"), []);
    const earlier = overlay.checked ? state.runs.slice(index + 1, index + 1 + OVERLAID_RUNS) : [];
    const shown = [];
    for (const run of [chosen, ...earlier]) {
      shown.push({ label: `${shortRun(run.run_id)}${run === chosen ? "" : " (earlier)"}`, metrics: await metricsOf(run) });
    }
    window.Charts.render(document.getElementById("charts"), shown);
  }

  function select(runId) {
    state.selected = runId;
    runSelect.value = runId;
    showCurves().catch((error) => say(`Could not draw the curves: ${error.message}`, true));
    document.getElementById("curves-h").scrollIntoView({ behavior: "smooth" });
  }

  async function tick() {
    let job;
    try {
      job = await api(path);
    } catch (error) {
      if (error.status === 404) {
        document.getElementById("title").textContent = `Job ${jobId} not found`;
        return;
      }
      throw error;
    }
    const listing = await api(`${path}/runs?page_size=20`);
    state.job = job;
    state.runs = listing.runs;
    showSummary(job, listing.runs);
    showControls(job);
    showProgress(job);
    showSpec(job);
    showRuns(listing.runs);
    await showLog(job);
    await showCurves();
    const key = `${job.latest_run_id}:${job.status}`;
    if (state.ticks % 6 === 0 || key !== state.checkpointsKey) await showCheckpoints();
    state.checkpointsKey = key;
    state.ticks += 1;
  }

  const refresh = poll(tick);
  runSelect.addEventListener("change", () => select(runSelect.value));
  overlay.addEventListener("change", () => showCurves());
  for (const button of document.querySelectorAll("#controls button")) {
    button.addEventListener("click", () => act(button.dataset.action, button));
  }
  role().then((name) => {
    document.body.dataset.role = name || "any";
    document.getElementById("controls").hidden = name === "viewer";
  });
})();
