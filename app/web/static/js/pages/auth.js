import { api, login } from "../api.js";
import { h, notice, render } from "../dom.js";
import { messageFor } from "../messages.js";

function nextTarget(params) {
  const next = params.get("next") || "/";
  return next.startsWith("/") ? `#${next}` : "#/";
}

function field(label, attrs) {
  return h("label", {}, label, h("input", { required: true, ...attrs }));
}

export function loginPage(main, params) {
  const form = h(
    "form",
    { class: "stack", novalidate: false },
    field("Email", { type: "email", name: "email", autocomplete: "email" }),
    field("Password", { type: "password", name: "password", autocomplete: "current-password" }),
    h("button", { class: "primary", type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await login(data.get("email"), data.get("password"));
      location.hash = nextTarget(params);
    } catch (error) {
      notice(messageFor(error));
    }
  });
  render(main, h("h1", {}, "Log in"), form,
    h("p", {}, "New here? ", h("a", { href: `#/signup?${params}` }, "Create an account")));
  form.querySelector("input").focus();
}

export function signupPage(main, params) {
  const form = h(
    "form",
    { class: "stack" },
    field("Display name", { name: "display_name", autocomplete: "nickname", maxlength: 60 }),
    field("Email", { type: "email", name: "email", autocomplete: "email" }),
    field("Password", { type: "password", name: "password", autocomplete: "new-password", minlength: 10 }),
    h("button", { class: "primary", type: "submit" }, "Create account"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      await api("/auth/signup", { method: "POST", body: data, retry: false });
      await login(data.email, data.password);
      location.hash = nextTarget(params);
    } catch (error) {
      notice(messageFor(error));
    }
  });
  render(main, h("h1", {}, "Create your account"), form,
    h("p", {}, "Already have one? ", h("a", { href: `#/login?${params}` }, "Log in")));
  form.querySelector("input").focus();
}
