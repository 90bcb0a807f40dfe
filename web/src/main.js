// The dashboard: login, the shell (nav, header) and the hash router over the pages registry.
import "@xterm/xterm/css/xterm.css";
import "./app.css";
import { ApiError, api, setUnauthorizedHandler, token } from "./api.js";
import pages from "./pages/index.js";
import { clear, h, toast } from "./ui.js";

const app = document.getElementById("app");
let me = null;          // GET /api/v1/whoami of the token
let cleanup = null;     // the shown page's cleanup
let main = null;        // the shell's content area

/** "#/instances/:name" -> a RegExp and its parameter names. */
function compile(path) {
  const names = [];
  const re = path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:(\w+)/g, (_, n) => {
    names.push(n);
    return "([^/]+)";
  });
  return { re: new RegExp(`^${re}/?$`), names };
}
const routes = pages.map((p) => ({ page: p, ...compile(p.path) }));

function match(hash) {
  const [path, q = ""] = (hash || "").split("?");
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) {
      const params = {};
      r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
      return { page: r.page, params, query: new URLSearchParams(q) };
    }
  }
  return null;
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function logout() {
  token.clear();
  me = null;
  if (cleanup) cleanup();
  cleanup = null;
  showLogin();
}

function showLogin(message) {
  if (cleanup) { cleanup(); cleanup = null; }
  main = null;
  clear(app);
  const input = h("input#token", { type: "password", name: "token", autocomplete: "current-password", required: true, placeholder: "your API token", "aria-describedby": "login-error" });
  const err = h("div.form-error#login-error", { role: "alert", hidden: !message }, message || "");
  const button = h("button.primary", { type: "submit" }, "Log in");
  const form = h("form.login-form", { "aria-label": "Log in" },
    h("h1", "lxcloud"),
    h("p.muted", "Log in with a user's API token (", h("code", "lxcloud user create"), " prints one)."),
    h("div.field", h("label", { for: "token" }, "Token"), input),
    err,
    h("div.actions", button));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    button.disabled = true;
    err.hidden = true;
    try {
      me = await api.get("/api/v1/whoami", { tok: t });
      token.set(t);
      showShell();
    } catch (e) {
      err.textContent = e.status === 401 ? "That token was refused: check it and try again." : e.message;
      err.hidden = false;
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  app.append(h("div.login", { "data-page": "login" }, form));
  input.focus();
}

function showShell() {
  if (cleanup) { cleanup(); cleanup = null; }
  clear(app);
  const nav = h("nav.nav", { "aria-label": "Pages" },
    h("ul", pages.filter((p) => p.nav).map((p) =>
      h("li", h("a", { href: p.path, dataset: { nav: p.path.slice(2) } }, p.title)))));
  const who = h("span.whoami", { title: `role ${me.role}` },
    h("span.user", me.user), " · ", h("span.project", me.project), me.is_admin ? h("span.badge", "admin") : null);
  const header = h("header.topbar",
    h("a.brand", { href: "#/instances" }, "lxcloud"),
    h("div.spacer"),
    who,
    h("button.logout", { type: "button", onclick: logout }, "Log out"));
  main = h("main.content", { tabindex: "-1" });
  app.append(h("div.shell", header, h("div.body", nav, main)));
  route();
}

function route() {
  if (!main) return;
  if (!location.hash || location.hash === "#" || location.hash === "#/") {
    location.replace("#/instances");
    return;
  }
  const found = match(location.hash);
  if (cleanup) {
    try { cleanup(); } catch (e) { console.warn(e); }
    cleanup = null;
  }
  clear(main);
  for (const a of document.querySelectorAll(".nav a")) {
    const active = location.hash === a.getAttribute("href") || location.hash.startsWith(`${a.getAttribute("href")}/`);
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!found) {
    main.append(h("section.page", { "data-page": "not-found" }, h("h1", "Not found"),
      h("p", "There is no page at ", h("code", location.hash), ". ", h("a", { href: "#/instances" }, "Instances"))));
    return;
  }
  const root = h("section.page", { "data-page": found.page.name || found.page.path.slice(2).split("/")[0] });
  main.append(root);
  document.title = `${found.page.title} · lxcloud`;
  const ctx = { api, me, params: found.params, query: found.query, navigate, toast };
  try {
    const c = found.page.render(root, ctx);
    cleanup = typeof c === "function" ? c : null;
  } catch (e) {
    root.append(h("div.form-error", { role: "alert" }, `This page failed: ${e.message}`));
    console.error(e);
  }
}

setUnauthorizedHandler(() => {
  token.clear();
  me = null;
  showLogin("Your session has ended (the token was refused): log in again.");
});
window.addEventListener("hashchange", route);

async function start() {
  const t = token.get();
  if (!t) return showLogin();
  try {
    me = await api.get("/api/v1/whoami", { tok: t });
    showShell();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      token.clear();
      return showLogin("Your session has ended (the token was refused): log in again.");
    }
    showLogin(e.message);
  }
}
start();
