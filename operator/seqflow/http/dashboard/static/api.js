// The HTTP API, called with the user's bearer token (kept in this tab's session storage only).

const TOKEN = "seqflow.token";

export const session = {
  token: () => sessionStorage.getItem(TOKEN),
  signIn: (token) => sessionStorage.setItem(TOKEN, token),
  signOut: () => sessionStorage.removeItem(TOKEN),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function call(path, {method = "GET", query, body} = {}) {
  const headers = {Accept: "application/json"};
  const token = session.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const search = query ? `?${new URLSearchParams(Object.entries(query).filter(([, v]) => v))}` : "";
  let response;
  try {
    response = await fetch(path + search, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `the operator did not answer (${error.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, (data && data.error) || response.statusText);
  return data;
}

export const runPath = (namespace, name) =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/runs/${encodeURIComponent(name)}`;

export const valuePath = (namespace, digest) =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/values/${encodeURIComponent(digest)}`;

// The log kept of one attempt, as text.
export async function logText(namespace, name, step, attempt) {
  const path = `${runPath(namespace, name)}/logs/${step.split("/").map(encodeURIComponent).join("/")}/${attempt}`;
  const response = await fetch(path, {headers: authorization()});
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.text();
}

// A stored value's first `bytes` bytes, as text (a large value is not fetched whole to be shown).
export async function valueHead(namespace, digest, bytes) {
  const response = await fetch(`${valuePath(namespace, digest)}?head=${bytes}`, {headers: authorization()});
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.text();
}

// Save a stored value as a file (fetched with the user's token, so the API's RBAC check applies).
export async function downloadValue(namespace, digest) {
  const response = await fetch(valuePath(namespace, digest), {headers: authorization()});
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${digest.replace("sha256:", "")}.json`;
  link.click();
  URL.revokeObjectURL(link.href);
}

// Save a file a step kept (artifact) by its key, checked against the API's RBAC like a value.
export async function downloadArtifact(namespace, key) {
  const rest = key.slice(namespace.length + 1).split("/").map(encodeURIComponent).join("/");
  const response = await fetch(`/api/v1/namespaces/${encodeURIComponent(namespace)}/artifacts/${rest}`,
    {headers: authorization()});
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = key.split("/").at(-1);
  link.click();
  URL.revokeObjectURL(link.href);
}

function authorization() {
  const token = session.token();
  return token ? {Authorization: `Bearer ${token}`} : {};
}
