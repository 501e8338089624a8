"use strict";
// /ui: every job with its status, progress, last run and next firing; filter and search.
(function () {
  const { api, poll, say, el, badge, timeEl, progressView, ACTIVE, duration } = window.Dash;
  const PAGE_SIZE = 50;
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get("status") || "",
    q: params.get("q") || "",
    page: Math.max(1, Number(params.get("page")) || 1),
  };
  const statusSelect = document.getElementById("status");
  const search = document.getElementById("search");
  const rows = document.querySelector("#jobs tbody");
  statusSelect.value = state.status;
  search.value = state.q;

  function remember() {
    const query = new URLSearchParams();
    if (state.status) query.set("status", state.status);
    if (state.q) query.set("q", state.q);
    if (state.page > 1) query.set("page", String(state.page));
    const suffix = query.toString();
    history.replaceState(null, "", suffix ? `?${suffix}` : location.pathname);
  }

  // A reason the run waits, if the API gives one (admission, where the deployment has it).
  function queuedReason(job) {
    return job.queued_reason || job.queue_reason || (job.admission && job.admission.reason) || null;
  }

  function lastRun(job) {
    if (!job.latest_run_id) return el("span", { className: "muted" }, "never ran");
    if (ACTIVE.has(job.status)) {
      return el("span", null, "started ", timeEl(job.started_at));
    }
    if (job.status === "pending") return el("span", { className: "muted" }, "new run pending");
    const took = job.started_at && job.completed_at
      ? (new Date(job.completed_at) - new Date(job.started_at)) / 1000
      : null;
    return el(
      "div",
      null,
      el("span", null, `${job.status} `, timeEl(job.completed_at), took !== null ? ` after ${duration(took)}` : ""),
      job.error_message ? el("div", { className: "error-text" }, job.error_message.slice(0, 160)) : null
    );
  }

  function nextFiring(job) {
    if (job.paused) return el("span", { className: "badge paused" }, "paused");
    if (!job.schedule) return el("span", { className: "muted" }, "one-off");
    return el("span", null, timeEl(job.next_run_at), el("div", { className: "muted mono" }, job.schedule));
  }

  function row(job) {
    const link = el("a", { href: `ui/jobs/${encodeURIComponent(job.job_id)}` }, job.name);
    const reason = queuedReason(job);
    return el(
      "tr",
      { "data-job-id": job.job_id },
      el("td", { "data-label": "Job" }, link, el("div", { className: "muted mono" }, job.job_id)),
      el(
        "td",
        { "data-label": "Status" },
        badge(job.status),
        job.paused ? el("span", { className: "badge paused" }, "paused") : null,
        reason ? el("div", { className: "muted" }, reason) : null
      ),
      el("td", { "data-label": "Progress" }, progressView(job.progress, job.started_at, ACTIVE.has(job.status))),
      el("td", { "data-label": "Last run" }, lastRun(job)),
      el("td", { "data-label": "Next firing" }, nextFiring(job))
    );
  }

  // Options for the statuses this orchestrator counts, each with its count.
  function showCounts(stats) {
    for (const option of [...statusSelect.options]) {
      if (!option.value) continue;
      if (!(option.value in stats)) {
        if (option.value !== state.status) option.remove();
        continue;
      }
      option.dataset.label = option.dataset.label || option.textContent;
      option.textContent = `${option.dataset.label} (${stats[option.value]})`;
    }
  }

  async function refresh() {
    showCounts(await api("/stats"));
    const query = new URLSearchParams({ page: String(state.page), page_size: String(PAGE_SIZE) });
    if (state.status) query.set("status_filter", state.status);
    if (state.q) query.set("name", state.q);
    const listing = await api(`/jobs?${query}`);
    window.Dash.fill(rows, ...listing.jobs.map(row));
    document.getElementById("empty").hidden = listing.jobs.length > 0;
    const pages = Math.max(1, Math.ceil(listing.total / listing.page_size));
    document.getElementById("page").textContent = `Page ${listing.page} of ${pages}`;
    document.getElementById("prev").disabled = listing.page <= 1;
    document.getElementById("next").disabled = listing.page >= pages;
    document.getElementById("counts").textContent =
      `${listing.total} job${listing.total === 1 ? "" : "s"}`;
    say("");
  }

  const now = poll(refresh);
  statusSelect.addEventListener("change", () => {
    state.status = statusSelect.value;
    state.page = 1;
    remember();
    now();
  });
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.q = search.value.trim().slice(0, 255);
      state.page = 1;
      remember();
      now();
    }, 300);
  });
  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("prev").addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    remember();
    now();
  });
  document.getElementById("next").addEventListener("click", () => {
    state.page += 1;
    remember();
    now();
  });
})();
