// Calls the seam API through the dashboard's in-process forwarder (/ui/api/* → /v4/*). The session
// cookie goes along on its own (same origin); state-changing calls carry the session's CSRF token.

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";

/** An error answer of the API: `code` is Stitch's error code, `message` says what to fix. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(url, method = "GET", body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "NetworkError", "seam did not answer: is `seam serve` still running?");
  }
  if (res.status === 401) {
    location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search));
    throw new ApiError(401, "SignedOut", "your session ended: sign in again");
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const code = data?.error || `HTTP${res.status}`;
    const message = data?.data?.message || (typeof data === "string" && data) || `request failed (${res.status})`;
    throw new ApiError(res.status, code, message);
  }
  return data;
}

/** `api.get("/sources")` calls GET /v4/sources. */
export const api = {
  get: (path) => request("/ui/api" + path),
  post: (path, body) => request("/ui/api" + path, "POST", body),
  put: (path, body) => request("/ui/api" + path, "PUT", body),
  del: (path) => request("/ui/api" + path, "DELETE"),
};

/** Dashboard helpers that are not part of the API (schema-name preview, cron preview). */
export const ui = {
  get: (path) => request("/ui" + path),
};
