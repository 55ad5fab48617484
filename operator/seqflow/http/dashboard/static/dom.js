// Building the page from data: text always goes in as text nodes, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
}

function appendAll(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("a", {href: "#/runs"}, "Runs"). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  appendAll(element, children);
  return element;
}

/** An SVG element. */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  appendAll(element, children);
  return element;
}

export function fill(element, ...children) {
  element.replaceChildren();
  appendAll(element, children);
  return element;
}

/** JSON in a collapsible block; `open` keeps the reader's choice across live refreshes. */
export function jsonBlock(title, value, open) {
  const text = JSON.stringify(value ?? null, null, 2);
  const block = h("details", {open: open.has(title)}, h("summary", {}, `${title} (${text.length} characters)`),
    h("pre", {class: "json"}, h("code", {}, text)));
  block.addEventListener("toggle", () => (block.open ? open.add(title) : open.delete(title)));
  return block;
}

export function badge(phase) {
  return h("span", {class: `badge ${phase || "Pending"}`}, phase || "Pending");
}

const MOMENT = new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "medium"});

export function when(moment) {
  return moment ? MOMENT.format(new Date(moment)) : "–";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export function between(start, end) {
  if (!start) return null;
  return ((end ? new Date(end) : new Date()) - new Date(start)) / 1000;
}
