// The seqflow dashboard: pages for runs, a run, workflows, starting a run and schedules, routed
// by the URL's fragment (#/runs, #/runs/NS/NAME, #/workflows, #/start/NS/WORKFLOW, #/schedules),
// refreshed by polling the HTTP API while they are shown.

import {ApiError, call, downloadArtifact, downloadValue, logText, runPath, session, valueHead} from "./api.js";
import {badge, between, duration, fill, h, jsonBlock, when} from "./dom.js";
import {stepsOf, timeline} from "./timeline.js";

const FINISHED = new Set(["Succeeded", "Failed", "Cancelled"]);
const PHASES = ["Pending", "Running", "Suspended", "Compensating", "Succeeded", "Failed", "Cancelled"];
const REFRESH_MS = 1000;
const ITEMS_PER_PAGE = 50;  // of a forEach's items, shown at once
const AFTER_ACTION_MS = 10_000;
const main = document.getElementById("main");
const notice = document.getElementById("notice");
let page = {stop() {}};  // the page shown; stop() ends its refreshes
let whoami = null;

// ----- notices, theme, sign-in -----

function tell(message, {info = false} = {}) {
  notice.hidden = !message;
  notice.className = info ? "info" : "";
  fill(notice, message || "");
}

function failed(error) {
  if (error instanceof ApiError && error.status === 401 && whoami?.authentication) {
    session.signOut();
    whoami = null;
    location.hash = "#/login";
    tell(`Signed out: ${error.message}`);
    return;
  }
  const status = error instanceof ApiError && error.status ? ` (${error.status})` : "";
  tell(`${error.message}${status}`);
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const toggle = document.getElementById("theme");
  toggle.setAttribute("aria-pressed", String(theme === "dark"));
  fill(toggle, theme === "dark" ? "Light theme" : "Dark theme");
}

function setUpChrome() {
  const stored = localStorage.getItem("seqflow.theme");
  applyTheme(stored || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  document.getElementById("theme").addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem("seqflow.theme", theme);
    applyTheme(theme);
  });
  document.getElementById("signout").addEventListener("click", () => {
    session.signOut();
    whoami = null;
    location.hash = "#/login";
  });
}

async function signedIn() {
  if (whoami) return true;
  try {
    whoami = await call("/api/v1/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
  fill(document.getElementById("user"), whoami.authentication ? `Signed in as ${whoami.user}` : "No sign-in (local)");
  document.getElementById("signout").hidden = !whoami.authentication;
  return true;
}

function loginPage() {
  const field = h("textarea", {id: "token", rows: 4, autocomplete: "off", spellcheck: "false", required: true});
  const form = h("form", {class: "login"},
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste a Kubernetes bearer token. What you may see and do is what the cluster's RBAC allows that token. ",
      "It stays in this browser tab only."),
    h("label", {for: "token"}, "Bearer token", field),
    h("p", {class: "muted"}, "For example: kubectl create token my-service-account -n my-namespace — or run ",
      h("code", {}, "kubectl seqflow dashboard"), ", which signs you in with your kubeconfig's credentials."),
    h("button", {type: "submit", class: "primary"}, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.signIn(field.value.trim());
    whoami = null;
    try {
      if (await signedIn()) {
        tell("");
        location.hash = "#/runs";
      } else {
        session.signOut();
        tell("That token is not valid for this cluster.");
      }
    } catch (error) {
      failed(error);
    }
  });
  fill(main, form);
  field.focus();
  return {stop() {}};
}

// ----- refreshing -----

/** Calls `load` now and every REFRESH_MS while the page is shown and the tab visible, one at a
 * time; `load` returns false to stop. `again()` calls it at once and keeps calling it for
 * AFTER_ACTION_MS whatever it returns: the operator takes up an action a moment after it is
 * accepted (a retried run still reads Failed just after the retry). */
function refreshing(load) {
  let timer = null;
  let stopped = false;
  let eagerUntil = 0;
  const round = async () => {
    if (stopped) return;
    let again = true;
    if (document.visibilityState === "visible") {
      try {
        again = (await load()) !== false;
      } catch (error) {
        failed(error);
      }
    }
    if (!stopped && (again || Date.now() < eagerUntil)) timer = setTimeout(round, REFRESH_MS);
  };
  round();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    again() {
      clearTimeout(timer);
      stopped = false;
      eagerUntil = Date.now() + AFTER_ACTION_MS;
      round();
    },
  };
}

// ----- runs -----

function runLink(namespace, name) {
  return h("a", {href: `#/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`}, name);
}

function runsPage(params) {
  const input = (name, label, attributes = {}) =>
    h("label", {}, label, h("input", {name, value: params.get(name) || "", ...attributes}));
  const localTime = (name) => {
    const value = params.get(name);
    return value ? new Date(value).toISOString().slice(0, 16) : "";
  };
  const phase = h("select", {name: "phase"}, h("option", {value: ""}, "any"),
    PHASES.map((p) => h("option", {value: p, selected: params.get("phase") === p}, p)));
  const form = h("form", {class: "filters", role: "search", "aria-label": "Filter runs"},
    input("namespace", "Namespace", {placeholder: "all", size: 14}),
    input("workflow", "Workflow", {placeholder: "all", size: 16}),
    h("label", {}, "Phase", phase),
    h("label", {}, "Created after (UTC)", h("input", {type: "datetime-local", name: "since", value: localTime("since")})),
    h("label", {}, "Created before (UTC)", h("input", {type: "datetime-local", name: "until", value: localTime("until")})),
    h("button", {type: "submit"}, "Filter"),
    h("a", {class: "button primary", href: "#/workflows"}, "Start a run"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (!value) continue;
      next.set(name, name === "since" || name === "until" ? `${value}:00Z` : value);
    }
    location.hash = `#/runs?${next}`;
  });
  const results = h("div", {"aria-live": "off"});
  const revision = params.get("revision");
  fill(main, h("h1", {}, revision ? `Runs of revision ${revision} of ${params.get("workflow")}` : "Runs"), form, results);
  const query = Object.fromEntries(["namespace", "workflow", "revision", "phase", "since", "until", "cursor"]
    .map((name) => [name, params.get(name)]));
  const earlier = (params.get("back") || "").split(",").filter(Boolean);
  return refreshing(async () => {
    const listed = await call("/api/v1/runs", {query: {...query, limit: 50}});
    tell("");
    fill(results, runsTable(listed.items), pager(params, listed.next, earlier));
  });
}

function runsTable(items) {
  if (!items.length) return h("p", {class: "muted"}, "No runs match.");
  return h("table", {},
    h("caption", {}, `${items.length} runs, newest first; live ones update every second`),
    h("thead", {}, h("tr", {}, ["Name", "Namespace", "Workflow", "Phase", "Now", "Created", "Took"]
      .map((title) => h("th", {scope: "col"}, title)))),
    h("tbody", {}, items.map((run) => h("tr", {},
      h("td", {class: "name"}, runLink(run.namespace, run.name)),
      h("td", {}, run.namespace),
      h("td", {}, run.workflow),
      h("td", {}, badge(run.phase)),
      h("td", {class: "muted"}, FINISHED.has(run.phase) ? "" : [(run.current || []).join(", "), run.progress ? ` (${run.progress})` : ""]),
      h("td", {}, when(run.createdAt)),
      h("td", {}, run.startedAt ? duration(between(run.startedAt, run.finishedAt)) : "–")))));
}

function pager(params, next, earlier) {
  const go = (cursor, back) => {
    const target = new URLSearchParams(params);
    target.delete("cursor");
    target.delete("back");
    if (cursor) target.set("cursor", cursor);
    if (back.length) target.set("back", back.join(","));
    return `#/runs?${target}`;
  };
  const current = params.get("cursor") || "";
  return h("nav", {class: "pager", "aria-label": "Pages"},
    current ? h("a", {class: "button", href: go(earlier.at(-1) || "", earlier.slice(0, -1))}, "← Newer") : null,
    current ? h("a", {class: "button", href: go("", [])}, "Newest") : null,
    next ? h("a", {class: "button", href: go(next, [...earlier, current])}, "Older →") : null);
}

// ----- one run -----

function runPage(namespace, name) {
  const open = new Set();
  const pages = new Map();  // a forEach's id -> the page of its items shown
  const header = h("div");
  const actions = h("div", {class: "actions", role: "group", "aria-label": "Run control"});
  const chart = h("div", {class: "timeline"});
  const details = h("div");
  // A step's wait.signal (NAME_PATTERN in api/models.py). Browsers compile `pattern` with the
  // `v` flag, where a "-" in a character class must be escaped.
  const signalName = h("input", {id: "signal-name", name: "signal", required: true, maxlength: 63,
    pattern: String.raw`[A-Za-z0-9]([A-Za-z0-9._\-]{0,61}[A-Za-z0-9])?`});
  const signalBody = h("textarea", {id: "signal-payload", rows: 3}, "{}");
  const signalForm = h("form", {class: "panel"},
    h("h2", {}, "Send a signal"),
    h("div", {class: "form-row"}, h("label", {for: "signal-name"}, "Signal", signalName)),
    h("label", {for: "signal-payload"}, "Payload (JSON object)", signalBody),
    h("p", {}, h("button", {type: "submit"}, "Send signal")));
  let run = null;
  const act = async (path, what, options = {}) => {
    try {
      const answer = await call(`${runPath(namespace, name)}/${path}`, {method: "POST", ...options});
      tell(`${what}: done.`, {info: true});
      if (answer.name !== name) location.hash = `#/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(answer.name)}`;
      else refresh.again();
    } catch (error) {
      failed(error);
    }
  };
  signalForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(`signals/${encodeURIComponent(signalName.value)}`, `Signal ${signalName.value}`, {body: signalBody.value || "{}"});
  });
  const pick = (stepId) => {
    const [parent, index] = stepId.split("/");
    if (pages.has(parent) && /^[0-9]+/.test(index || "")) {  // an item: turn to its page first
      pages.set(parent, Math.floor(parseInt(index, 10) / ITEMS_PER_PAGE));
      render();
    }
    const target = details.querySelector(`[data-step="${CSS.escape(stepId)}"]`);
    if (target) {
      target.open = true;
      open.add(`step ${stepId}`);
      target.scrollIntoView({block: "nearest"});
      target.querySelector("summary").focus();
    }
  };
  fill(main, h("p", {}, h("a", {href: "#/runs"}, "← Runs")), header, actions,
    h("h2", {}, "Timeline"), legend(), chart, details, signalForm);
  const turn = (stepId, to) => {
    pages.set(stepId, to);
    render();
  };
  const render = () => {
    const live = Boolean(run.live) && !FINISHED.has(run.phase);
    const steps = shownSteps(stepsOf(run), pages);
    fill(header, runHeader(run));
    fill(actions, controls(run, act));
    fill(chart, timeline(run, steps, {live, onPick: pick}));
    fill(details, stepDetails(run, steps, {open, turn, pick, act}), activityLog(run, open));
    signalForm.hidden = FINISHED.has(run.phase);
    return live;
  };
  const refresh = refreshing(async () => {
    const [found, logs] = await Promise.all([call(runPath(namespace, name), {query: {values: "ref"}}),
      call(`${runPath(namespace, name)}/logs`).catch(() => ({items: []}))]);
    run = {...found, logs: new Map(logs.items.map((log) => [`${log.task} #${log.attempt}`, log]))};
    return render() || !FINISHED.has(run.phase);
  });
  return refresh;
}

/** The steps to show: every step and group member, and of each forEach's items the page chosen
 * in `pages` (the first unless turned), each forEach with `items` (how many have started), `page`,
 * `succeeded` (how many did) and `failed` (the failed ones' ids). */
function shownSteps(steps, pages) {
  const fanOuts = new Map(steps.filter((s) => s.attempts[0]?.executor === "forEach").map((s) => [s.id, []]));
  for (const step of steps) {
    if (step.depth === 1) fanOuts.get(step.id.split("/")[0])?.push(step);
  }
  const shown = [];
  for (const step of steps) {
    if (step.depth === 1 && fanOuts.has(step.id.split("/")[0])) continue;  // shown with its forEach
    const items = fanOuts.get(step.id);
    if (!items) {
      shown.push(step);
      continue;
    }
    const index = (item) => parseInt(item.id.split("/")[1], 10);  // (an item's compensation after it)
    items.sort((a, b) => index(a) - index(b));
    const page = Math.min(pages.get(step.id) || 0, Math.max(0, Math.ceil(items.length / ITEMS_PER_PAGE) - 1));
    pages.set(step.id, page);
    const own = items.filter((item) => !item.id.includes(":"));  // (not their compensations)
    const failed = own.filter((item) => item.attempts.at(-1)?.outcome === "bad").map((item) => item.id);
    const succeeded = own.filter((item) => item.attempts.at(-1)?.outcome === "ok").length;
    shown.push({...step, items: items.length, page, failed, succeeded},
      ...items.slice(page * ITEMS_PER_PAGE, (page + 1) * ITEMS_PER_PAGE));
  }
  return shown;
}

/** A forEach's counters (the live node's, else counted from its items' last attempts), a pager
 * through its items and links to the failed ones. */
function fanOutPanel(step, node, {turn, pick}) {
  const fan = node?.fanOut;
  const pages = Math.max(1, Math.ceil(step.items / ITEMS_PER_PAGE));
  const first = step.page * ITEMS_PER_PAGE;
  const counters = fan
    ? `${fan.total} items: ${fan.succeeded} succeeded, ${fan.failed} failed, ${fan.running} running, ${fan.total - fan.admitted} not started`
    : `${step.items} items started: ${step.succeeded} succeeded, ${step.failed.length} failed`;
  const failed = fan?.failedItems || step.failed;
  const link = (id) => h("a", {href: "#", onclick: (event) => { event.preventDefault(); pick(id); }}, id);
  return h("div", {class: "fan-out"},
    h("p", {}, counters),
    h("nav", {class: "pager", "aria-label": `Items of ${step.id}`},
      h("button", {type: "button", disabled: step.page === 0, onclick: () => turn(step.id, step.page - 1)}, "← Previous items"),
      ` Items ${Math.min(first + 1, step.items)}–${Math.min(first + ITEMS_PER_PAGE, step.items)} of ${step.items} `,
      h("button", {type: "button", disabled: step.page >= pages - 1, onclick: () => turn(step.id, step.page + 1)}, "Next items →")),
    failed.length ? h("p", {}, "Failed: ", failed.slice(0, 20).flatMap((id, i) => [i ? ", " : "", link(id)]),
      failed.length > 20 ? ` and ${failed.length - 20} more` : "") : null);
}

function legend() {
  return h("div", {class: "legend", "aria-hidden": "true"},
    [["ok", "succeeded"], ["bad", "failed"], ["retry", "failed, retried (dashes: backoff)"],
      ["run", "running"], ["wait", "waiting"], ["off", "cancelled or skipped"]]
      .map(([kind, text]) => h("span", {class: kind}, text)));
}

function runHeader(run) {
  const live = run.live || {};
  const error = run.error || (live.conditions || []).find((c) => c.type === "Succeeded" && c.status === "False")?.message;
  const started = run.activity.find((entry) => entry.event === "WORKFLOW_STARTED")?.details || {};
  const retryOf = started.retryOf ? {run: started.retryOf, step: started.from} : null;
  return [
    h("h1", {}, run.name, " ", badge(run.phase)),
    h("dl", {class: "facts"},
      h("dt", {}, "Namespace"), h("dd", {}, run.namespace),
      h("dt", {}, "Workflow"), h("dd", {}, h("a", {href: `#/workflows?namespace=${encodeURIComponent(run.namespace)}`}, run.workflow || "–")),
      h("dt", {}, "Created"), h("dd", {}, when(run.createdAt)),
      retryOf ? [h("dt", {}, "Retry of"), h("dd", {}, runLink(run.namespace, retryOf.run), ` from ${retryOf.step}`)] : null,
      h("dt", {}, "Started"), h("dd", {}, when(run.startedAt || live.startedAt)),
      h("dt", {}, "Finished"), h("dd", {}, when(run.finishedAt || live.finishedAt)),
      live.progress ? [h("dt", {}, "Progress"), h("dd", {}, live.progress)] : null,
      (live.current || []).length ? [h("dt", {}, "Now"), h("dd", {}, live.current.join(", "))] : null,
      error ? [h("dt", {}, "Why"), h("dd", {class: "error"}, error)] : null),
  ];
}

function controls(run, act) {
  const finished = FINISHED.has(run.phase);
  const button = (label, path, enabled) =>
    h("button", {type: "button", disabled: !enabled, onclick: () => act(path, label)}, label);
  return [
    run.phase === "Suspended" ? button("Resume", "resume", true) : button("Suspend", "suspend", !finished),
    button("Cancel", "cancel", !finished),
    button("Retry", "retry", run.phase === "Failed" || run.phase === "Cancelled"),
    button("Rerun", "rerun", true),
  ];
}

function stepDetails(run, steps, {open, turn, pick, act}) {
  const nodes = new Map(((run.live || {}).nodes || []).map((node) => [node.id, node]));
  return [
    h("h2", {}, "Steps"),
    steps.length ? null : h("p", {class: "muted"}, "No step has started yet."),
    steps.map((step) => {
      const node = nodes.get(step.id);
      const last = step.attempts.at(-1);
      const phase = node?.phase || (step.skippedAt ? (step.cached ? "Cached" : "Skipped") : {ok: "Succeeded", bad: "Failed", retry: "Retrying", off: "Cancelled", run: "Running"}[last?.outcome]);
      const key = `step ${step.id}`;
      const block = h("details", {class: "panel", "data-step": step.id, open: open.has(key)},
        h("summary", {}, h("strong", {}, step.id), " ", badge(phase), ` ${step.attempts.length} attempt(s)`,
          node?.nextRetryAt ? ` · next attempt ${when(node.nextRetryAt)}` : ""),
        FINISHED.has(run.phase) && !step.depth
          ? h("p", {}, h("button", {type: "button", onclick: () => act("retry-from", `Retry from ${step.id}`,
            {body: JSON.stringify({step: step.id})})}, "Retry from here"),
          " (a new run: the steps before this one kept, this one and those after run again)")
          : null,

        step.attempts.map((attempt) => h("div", {},
          h("h3", {}, `Attempt ${attempt.n}`, attempt.executor ? ` (${attempt.executor})` : ""),
          h("p", {}, `Started ${when(new Date(attempt.start).toISOString())}`,
            attempt.end ? `, took ${duration((attempt.end - attempt.start) / 1000)}` : ", still going"),
          attempt.child ? h("p", {}, "Child run: ", runLink(run.namespace, attempt.child)) : null,
          attempt.error ? h("p", {class: "error"}, attempt.error) : null,
          valueBlock(run.namespace, `${step.id} #${attempt.n} input`, attempt.input, open),
          attempt.output !== undefined
            ? valueBlock(run.namespace, `${step.id} #${attempt.n} output`, attempt.output, open) : null,
          fileList(run.namespace, attempt.artifacts),
          logBlock(run, run.logs.get(`${step.id} #${attempt.n}`), open))));
      block.addEventListener("toggle", () => (block.open ? open.add(key) : open.delete(key)));
      return step.items === undefined ? block : [block, fanOutPanel(step, node, {turn, pick})];
    }),
    h("h2", {}, "Input and output"),
    valueBlock(run.namespace, "Run input", run.input, open),
    valueBlock(run.namespace, "Run output", run.output ?? (run.live || {}).output ?? null, open),
  ];
}

// The log kept of an attempt, fetched when opened (its tail, when it was longer than kept).
function logBlock(run, log, open) {
  if (!log) return null;
  const key = `log ${log.task} #${log.attempt}`;
  const text = h("pre", {class: "log"}, "Loading…");
  const about = log.truncated ? `the last ${log.kept} of ${log.size} bytes` : `${log.size} bytes`;
  const block = h("details", {open: open.has(key)}, h("summary", {}, `Log (${about})`), text);
  const load = () => logText(run.namespace, run.name, log.task, log.attempt)
    .then((got) => fill(text, got)).catch((error) => fill(text, `Not read: ${error.message}`));
  block.addEventListener("toggle", () => {
    if (block.open) {
      open.add(key);
      load();
    } else open.delete(key);
  });
  if (block.open) load();
  return block;
}

// The files an attempt kept, each with a download (fetched with the user's token).
function fileList(namespace, artifacts) {
  if (!artifacts || !artifacts.length) return null;
  return h("ul", {class: "files"}, artifacts.map((file) => h("li", {},
    h("button", {type: "button", onclick: () => downloadArtifact(namespace, file.key)}, "Download"),
    ` ${file.name} (${file.size} bytes, sha256 ${file.sha256.slice(0, 12)}…)`)));
}

const PREVIEW_BYTES = 4096;
const previews = new Map(); // digest -> the first PREVIEW_BYTES of the value

// A value as JSON, or a stored one ({ref, size}) as its first part and a download.
function valueBlock(namespace, title, value, open) {
  const stored = value && typeof value === "object" && Object.keys(value).length === 2 &&
    typeof value.ref === "string" && value.ref.startsWith("sha256:") && Number.isInteger(value.size);
  if (!stored) return jsonBlock(title, value, open);
  const preview = h("code", {}, previews.get(value.ref) ?? "…");
  const download = h("button", {type: "button", onclick: () => downloadValue(namespace, value.ref)}, "Download");
  const block = h("details", {class: "stored", open: open.has(title)},
    h("summary", {}, `${title} (stored, ${value.size} bytes)`),
    h("p", {}, download, ` the whole value, or its first ${PREVIEW_BYTES} bytes:`),
    h("pre", {class: "json"}, preview));
  const show = async () => {
    if (!previews.has(value.ref)) {
      const head = await valueHead(namespace, value.ref, PREVIEW_BYTES);
      previews.set(value.ref, value.size > PREVIEW_BYTES ? `${head}…` : head);
    }
    fill(preview, previews.get(value.ref));
  };
  block.addEventListener("toggle", () => {
    if (block.open) {
      open.add(title);
      show().catch((error) => fill(preview, `cannot be read: ${error.message}`));
    } else {
      open.delete(title);
    }
  });
  if (block.open) show().catch((error) => fill(preview, `cannot be read: ${error.message}`));
  return block;
}

function activityLog(run, open) {
  const key = "activity";
  const block = h("details", {open: open.has(key)},
    h("summary", {}, h("strong", {}, `Activity log (${run.activity.length} entries)`)),
    h("table", {},
      h("thead", {}, h("tr", {}, ["#", "When", "Event", "Step", "Attempt", "Details"].map((t) => h("th", {scope: "col"}, t)))),
      h("tbody", {}, run.activity.map((entry) => h("tr", {},
        h("td", {}, entry.seq), h("td", {}, when(entry.at)), h("td", {}, entry.event),
        h("td", {}, entry.task || ""), h("td", {}, entry.attempt ?? ""),
        h("td", {}, h("code", {}, summarize(entry.details))))))));
  block.addEventListener("toggle", () => (block.open ? open.add(key) : open.delete(key)));
  return block;
}

function summarize(details) {
  const text = JSON.stringify(details || {});
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

// ----- workflows, starting a run, schedules -----

function workflowsPage(params) {
  const namespace = params.get("namespace") || "";
  const results = h("div");
  fill(main, h("h1", {}, "Workflows"), results);
  const path = namespace ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/workflows` : "/api/v1/workflows";
  return refreshing(async () => {
    const {items} = await call(path);
    fill(results, items.length ? items.map(workflowCard) : h("p", {class: "muted"}, "No Workflows."));
    return false;
  });
}

function stepItem(step) {
  return h("li", {}, h("strong", {}, step.name), ` ${step.type}`, step.detail ? `: ${step.detail}` : "",
    step.when ? h("span", {class: "muted"}, ` when ${step.when}`) : "",
    step.members ? h("ul", {class: "steps"}, step.members.map(stepItem)) : null);
}

function workflowCard(workflow) {
  return h("section", {class: "panel", "aria-label": `Workflow ${workflow.name}`},
    h("h2", {}, `${workflow.namespace}/${workflow.name} `,
      h("span", {class: workflow.valid ? "valid" : "invalid"}, workflow.valid ? "Ready" : `Not ready: ${workflow.reason || "unknown"}`)),
    workflow.description ? h("p", {}, workflow.description) : null,
    workflow.valid ? null : h("p", {class: "error"}, workflow.message || ""),
    h("ol", {class: "steps"}, (workflow.steps || []).map(stepItem)),
    h("p", {}, h("a", {class: "button primary",
      href: `#/start/${encodeURIComponent(workflow.namespace)}/${encodeURIComponent(workflow.name)}`}, `Start ${workflow.name}`),
    " ", h("a", {href: `#/runs?namespace=${encodeURIComponent(workflow.namespace)}&workflow=${encodeURIComponent(workflow.name)}`}, "Its runs")),
    revisionsList(workflow));
}

function tasksOf(spec) {
  const names = (spec.tasks || []).map((t) => t.name);
  return `${names.length} task${names.length === 1 ? "" : "s"}: ${names.join(", ")}`;
}

// A Workflow's revisions, read when opened: each with the runs that ran it.
function revisionsList(workflow) {
  const list = h("ol", {class: "revisions", reversed: true});
  const details = h("details", {}, h("summary", {}, "Revisions"), list);
  const path = `/api/v1/namespaces/${encodeURIComponent(workflow.namespace)}/workflows/${encodeURIComponent(workflow.name)}/revisions`;
  details.addEventListener("toggle", async () => {
    if (!details.open) return;
    const {items} = await call(path);
    const runs = (n) => `#/runs?namespace=${encodeURIComponent(workflow.namespace)}&workflow=${encodeURIComponent(workflow.name)}&revision=${n}`;
    fill(list, items.map((r) => h("li", {"aria-label": `Revision ${r.revision}`},
      h("strong", {}, `Revision ${r.revision}`), r.current ? " (current)" : "", r.ready && !r.current ? " (latest Ready)" : "",
      " ", h("span", {class: "muted"}, when(r.createdAt)), " ",
      tasksOf(r.spec), " ",
      h("a", {href: runs(r.revision)}, "Its runs"))));
  });
  return details;
}

function skeleton(schema) {
  if (!schema || schema.type !== "object") return {};
  const value = {};
  for (const name of schema.required || []) {
    const type = (schema.properties || {})[name]?.type;
    value[name] = {string: "", integer: 0, number: 0, boolean: false, array: [], object: {}}[type] ?? null;
  }
  return value;
}

function startPage(namespace, workflow) {
  const editor = h("textarea", {id: "input", rows: 12, spellcheck: "false", "aria-describedby": "verdict"});
  const verdict = h("p", {id: "verdict", "aria-live": "polite"});
  const schemaView = h("div");
  const submit = h("button", {type: "submit", class: "primary"}, "Start run");
  const form = h("form", {},
    h("h1", {}, `Start ${workflow}`), h("p", {class: "muted"}, `in namespace ${namespace}`),
    h("label", {for: "input"}, "Input (a JSON object)", editor), verdict, h("p", {}, submit), schemaView);
  fill(main, h("p", {}, h("a", {href: "#/workflows"}, "← Workflows")), form);
  const runs = `/api/v1/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflow)}/runs`;
  let timer = null;
  const check = async () => {
    let parsed;
    try {
      parsed = JSON.parse(editor.value || "{}");
    } catch (error) {
      fill(verdict, h("span", {class: "invalid"}, `Not JSON: ${error.message}`));
      return false;
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      fill(verdict, h("span", {class: "invalid"}, "The input must be a JSON object."));
      return false;
    }
    try {
      await call(runs, {method: "POST", query: {dryRun: "true"}, body: editor.value || "{}"});
      fill(verdict, h("span", {class: "valid"}, "The input matches the Workflow's inputSchema."));
      return true;
    } catch (error) {
      fill(verdict, h("span", {class: "invalid"}, `${error.message} (${error.status})`));
      return false;
    }
  };
  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!(await check())) return;
    try {
      const created = await call(runs, {method: "POST", body: editor.value || "{}"});
      location.hash = `#/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(created.name)}`;
    } catch (error) {
      failed(error);
    }
  });
  call(`/api/v1/namespaces/${encodeURIComponent(namespace)}/workflows`).then(({items}) => {
    const found = items.find((w) => w.name === workflow);
    if (!found) return tell(`No Workflow ${namespace}/${workflow}.`);
    editor.value = JSON.stringify(skeleton(found.inputSchema), null, 2);
    fill(schemaView, found.inputSchema ? jsonBlock("inputSchema", found.inputSchema, new Set(["inputSchema"])) :
      h("p", {class: "muted"}, "This Workflow declares no inputSchema: any JSON object is accepted."));
    check();
  }, failed);
  editor.focus();
  return {stop: () => clearTimeout(timer)};
}

function schedulesPage() {
  const results = h("div");
  fill(main, h("h1", {}, "Schedules"), results);
  return refreshing(async () => {
    const {items} = await call("/api/v1/schedules");
    fill(results, items.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "Namespace", "Schedule", "Workflow", "Next run", "Last run", "Active", "State"]
        .map((t) => h("th", {scope: "col"}, t)))),
      h("tbody", {}, items.map((s) => h("tr", {},
        h("td", {class: "name"}, s.name), h("td", {}, s.namespace),
        h("td", {}, h("code", {}, s.schedule), s.timeZone ? ` (${s.timeZone})` : ""),
        h("td", {}, h("a", {href: `#/runs?namespace=${encodeURIComponent(s.namespace)}&workflow=${encodeURIComponent(s.workflow || "")}`}, s.workflow)),
        h("td", {}, s.suspend ? "suspended" : when(s.nextScheduleTime)), h("td", {}, when(s.lastScheduleTime)),
        h("td", {}, s.active.map((name) => [runLink(s.namespace, name), " "])),
        h("td", {}, s.ready ? "Ready" : h("span", {class: "invalid"}, s.message || "Not ready"))))))
      : h("p", {class: "muted"}, "No WorkflowSchedules."));
  });
}

// ----- routing -----

async function route() {
  page.stop();
  const hash = location.hash || "#/runs";
  if (hash.startsWith("#token=")) {  // from `kubectl seqflow dashboard`: sign in, then forget it
    session.signIn(decodeURIComponent(hash.slice(7)));
    whoami = null;
    history.replaceState(null, "", "#/runs");
    return route();
  }
  const [path, search] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search || "");
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.section === parts[0]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (parts[0] === "login" || !(await signedIn())) {
      page = loginPage();
      return;
    }
  } catch (error) {
    failed(error);
    return;
  }
  if (parts[0] === "runs" && parts.length === 3) page = runPage(parts[1], parts[2]);
  else if (parts[0] === "workflows") page = workflowsPage(params);
  else if (parts[0] === "start" && parts.length === 3) page = startPage(parts[1], parts[2]);
  else if (parts[0] === "schedules") page = schedulesPage();
  else page = runsPage(params);
}

setUpChrome();
window.addEventListener("hashchange", () => {
  tell("");
  route();
});
route();
