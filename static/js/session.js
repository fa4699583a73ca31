// When the session ends while a page is open (15 minutes idle), an htmx request gets 401 and a
// `session-expired` event (reports/middleware.py). Nothing on the page is lost: this shows a
// sign-in panel in place, signs in with fetch, takes the new CSRF token, and then tells the page
// to save again (RELIABILITY SES-03).
(function () {
  "use strict";
  if (window.clinikuiSession) return; // loaded again by a boosted navigation
  window.clinikuiSession = true;

  function panel() {
    return document.getElementById("session-expired");
  }

  document.addEventListener("session-expired", function () {
    var box = panel();
    if (!box || !box.hidden) return;
    box.hidden = false;
    box.querySelector("input[type=password]").focus();
  });

  // Signing in rotates the CSRF token: every form and the htmx header must carry the new one.
  function useToken(doc) {
    var headers = doc.body && doc.body.getAttribute("hx-headers");
    if (!headers) return;
    document.body.setAttribute("hx-headers", headers);
    var token = JSON.parse(headers)["x-csrftoken"];
    document.querySelectorAll("input[name=csrfmiddlewaretoken]").forEach(function (input) {
      input.value = token;
    });
  }

  async function signIn(form) {
    var loginUrl = form.dataset.loginUrl;
    var message = form.querySelector("[data-reauth-error]");
    message.textContent = "";
    var page = await fetch(loginUrl, { credentials: "same-origin" });
    var doc = new DOMParser().parseFromString(await page.text(), "text/html");
    var token = doc.querySelector("input[name=csrfmiddlewaretoken]");
    if (!token) { message.textContent = "ClinikUI could not be reached; try again."; return; }
    var body = new URLSearchParams({
      csrfmiddlewaretoken: token.value,
      username: form.elements.username.value,
      password: form.elements.password.value,
    });
    var answer = await fetch(loginUrl, { method: "POST", body: body, credentials: "same-origin" });
    var after = new DOMParser().parseFromString(await answer.text(), "text/html");
    if (answer.status === 429) {
      // Too many failed passwords (django-axes): a lockout, not a wrong password.
      message.textContent =
        "Too many failed sign-ins: this account is locked for 15 minutes. Your text is still here.";
      form.elements.password.value = "";
      return;
    }
    if (new URL(answer.url).pathname === new URL(loginUrl, window.location.href).pathname) {
      message.textContent = "That password was not accepted. Your text is still here.";
      form.elements.password.value = "";
      form.elements.password.focus();
      return;
    }
    useToken(after);
    form.elements.password.value = "";
    panel().hidden = true;
    document.dispatchEvent(new CustomEvent("session-restored"));
  }

  document.addEventListener("submit", function (event) {
    if (event.target.id !== "reauth-form") return;
    event.preventDefault();
    signIn(event.target).catch(function () {
      event.target.querySelector("[data-reauth-error]").textContent =
        "ClinikUI could not be reached; try again.";
    });
  });
})();
