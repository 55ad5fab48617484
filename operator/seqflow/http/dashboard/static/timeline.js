// A run's timeline: one row per step (a parallel group's members under it), one bar per
// attempt, dashed lines for backoff waits, a mark for skipped steps. Built from the activity log.

import {duration, svg} from "./dom.js";

const ENDS = {TASK_COMPLETED: "ok", TASK_FAILED: "bad", TASK_RETRY: "retry", TASK_CANCELLED: "off"};
const OUTCOME_TEXT = {ok: "succeeded", bad: "failed", retry: "failed, retried", off: "cancelled", run: "running"};
const WAITING = new Set(["wait", "sleep"]);
const LABEL = 210, CHART = 740, ROW = 26, TOP = 26;

const time = (moment) => (moment ? new Date(moment).getTime() : null);

/** Steps in order, each with its attempts: {id, depth, skippedAt, attempts: [{n, start, end,
 * outcome, executor, input, output, artifacts, error, retryAt, child}]}. */
export function stepsOf(run) {
  const steps = new Map();
  const step = (id) => {
    if (!steps.has(id)) steps.set(id, {id, depth: id.includes("/") ? 1 : 0, skippedAt: null, attempts: []});
    return steps.get(id);
  };
  for (const entry of run.activity) {
    if (!entry.task) continue;
    const current = step(entry.task);
    const details = entry.details || {};
    if (entry.event === "TASK_STARTED") {
      current.attempts.push({
        n: entry.attempt, start: time(entry.at), end: null, outcome: "run", executor: details.executor,
        input: details.input, child: details.child,
      });
    } else if (entry.event in ENDS) {
      const attempt = current.attempts.findLast((a) => a.n === entry.attempt) || current.attempts.at(-1);
      if (!attempt) continue;
      attempt.end = time(entry.at);
      attempt.outcome = ENDS[entry.event];
      attempt.output = details.output;
      attempt.artifacts = details.artifacts;
      attempt.error = details.error;
      attempt.retryAt = time(details.next_retry_at);
    } else if (entry.event === "TASK_SKIPPED") {
      current.skippedAt = time(entry.at);
    } else if (entry.event === "TASK_CACHED") {
      current.skippedAt = time(entry.at);
      current.cached = true;
    }
  }
  const under = new Map();  // a group's members, a forEach's items (thousands, maybe)
  for (const current of steps.values()) {
    const group = current.id.split("/")[0];
    if (current.depth !== 1 || !steps.has(group)) continue;
    if (!under.has(group)) under.set(group, []);
    under.get(group).push(current);
  }
  const ordered = [];
  for (const current of steps.values()) {
    if (current.depth === 1 && steps.has(current.id.split("/")[0])) continue;  // listed under its group
    ordered.push(current, ...(under.get(current.id) || []));
  }
  return ordered;
}

/** The SVG chart; `onPick(stepId)` is called when a bar is chosen (click or Enter). */
export function timeline(run, steps, {live, onPick}) {
  const now = Date.now();
  const ends = [];
  let start = time(run.startedAt) || time(run.createdAt) || now;
  for (const current of steps) {
    for (const attempt of current.attempts) {
      start = Math.min(start, attempt.start);
      ends.push(attempt.end ?? (live ? now : time(run.finishedAt) || attempt.start), attempt.retryAt || 0);
    }
    if (current.skippedAt) ends.push(current.skippedAt);
  }
  if (live) ends.push(now);
  const finish = Math.max(start + 1000, time(run.finishedAt) || 0, ...ends);
  const span = finish - start;
  const x = (moment) => LABEL + ((moment - start) / span) * CHART;
  const height = TOP + Math.max(1, steps.length) * ROW + 6;
  const chart = svg("svg", {
    viewBox: `0 0 ${LABEL + CHART + 60} ${height}`, width: LABEL + CHART + 60, height, role: "img",
    "aria-label": `Timeline of ${steps.length} steps over ${duration(span / 1000)}`,
  });
  for (let tick = 0; tick <= 5; tick++) {
    const at = LABEL + (tick / 5) * CHART;
    chart.append(
      svg("line", {class: "grid", x1: at, x2: at, y1: TOP - 6, y2: height}),
      svg("text", {class: "tick", x: at + 3, y: 14}, duration((tick / 5) * span / 1000)),
    );
  }
  if (live) chart.append(svg("line", {class: "now", x1: x(now), x2: x(now), y1: TOP - 6, y2: height}));
  steps.forEach((current, index) => {
    const y = TOP + index * ROW;
    const name = current.depth ? `  ${current.id.split("/").slice(1).join("/")}` : current.id;
    chart.append(svg("text", {x: 8 + current.depth * 16, y: y + 16}, name.trim()));
    if (current.skippedAt) {
      const at = x(current.skippedAt);
      const why = current.cached ? "cached (an earlier run's output, kept under its key)" : "skipped (its condition was false)";
      chart.append(svg("path", {class: "skip-mark", d: `M${at} ${y + 5} l6 7 l-6 7 l-6 -7 z`},
        svg("title", {}, `${current.id}: ${why}`)));
      chart.append(svg("text", {class: "tick", x: at + 10, y: y + 16}, current.cached ? "cached" : "skipped"));
    }
    current.attempts.forEach((attempt, position) => {
      const end = attempt.end ?? (live ? now : time(run.finishedAt) || attempt.start);
      const kind = attempt.outcome === "run" && WAITING.has(attempt.executor) ? "wait" : attempt.outcome;
      const took = duration((end - attempt.start) / 1000);
      const label = `${current.id} attempt ${attempt.n}: ${OUTCOME_TEXT[attempt.outcome]}, ${took}` +
        (attempt.error ? `: ${attempt.error}` : "") + (attempt.child ? ` (child run ${attempt.child})` : "");
      const bar = svg("rect", {
        class: `attempt ${kind}`, x: x(attempt.start), y: y + 4, rx: 3, height: ROW - 8,
        width: Math.max(3, x(end) - x(attempt.start)),
      }, svg("title", {}, label));
      const target = attempt.child
        ? svg("a", {href: `#/runs/${encodeURIComponent(run.namespace)}/${encodeURIComponent(attempt.child)}`,
          "aria-label": label}, bar)
        : svg("a", {tabindex: 0, role: "button", "aria-label": label,
          onclick: () => onPick(current.id),
          onkeydown: (event) => event.key === "Enter" && onPick(current.id)}, bar);
      chart.append(target);
      const next = current.attempts[position + 1];
      if (attempt.retryAt) {
        const until = next ? next.start : Math.max(attempt.retryAt, live ? now : 0);
        chart.append(svg("line", {class: "backoff", x1: x(end), x2: x(until), y1: y + ROW / 2, y2: y + ROW / 2},
          svg("title", {}, `${current.id}: backoff ${duration((attempt.retryAt - end) / 1000)} before attempt ${attempt.n + 1}`)));
      }
    });
  });
  return chart;
}
