/* Community Cloud staff console: a little progressive JavaScript, written for this project.
   Every page works without it (forms post, links link); with it:
   - sign-in: the token (or the Mini App's initData) is read from the URL fragment and posted;
   - the menu folds behind a button on phones; filter selects apply when changed;
   - data-confirm="…" asks before a button or form goes ahead;
   - data-live="URL" on a form: as you type, GET URL?<the form's fields> and put the HTML answer
     into the element named by data-live-target (a server-rendered fragment: live counts, previews);
   - window.consoleFetch(url, options): fetch with the session's CSRF token header, for scripts
     that post (state-changing requests need it, like every form's hidden "csrf" field). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  window.consoleFetch = function (url, options) {
    options = options || {};
    options.headers = options.headers || {};
    options.headers["X-CSRF-Token"] = csrf;
    options.credentials = "same-origin";
    return fetch(url, options);
  };

  function fragmentValue(key) {
    var params = new URLSearchParams(window.location.hash.slice(1));
    var value = params.get(key);
    if (!value && key === "tgWebAppData" && window.Telegram && window.Telegram.WebApp) {
      value = window.Telegram.WebApp.initData;
    }
    return value;
  }

  function signIn() {
    var form = document.querySelector("form[data-fragment-login]");
    if (!form) {
      // Signed in already, the server sent a sign-in link on to this page, and the browser carried the
      // link's fragment along: the token leaves the address bar unused (it expires by itself).
      if (/(^|[#&])(t|tgWebAppData)=/.test(window.location.hash)) {
        window.history.replaceState(null, "", window.location.pathname + window.location.search);
      }
      return;
    }
    var value = fragmentValue(form.getAttribute("data-fragment-login"));
    if (!value) return;
    form.querySelector('input[type="hidden"]').value = value;
    // The token leaves the address bar (and the history) before anything else can read it.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    var note = form.querySelector(".signing-in");
    if (note) note.hidden = false;
    form.submit();
  }

  function menu() {
    var toggle = document.querySelector("[data-nav-toggle]");
    var nav = document.getElementById("nav");
    if (!toggle || !nav) return;
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function confirmations() {
    document.addEventListener("click", function (event) {
      var el = event.target.closest("[data-confirm]");
      if (el && !window.confirm(el.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  function autosubmit() {
    document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function live() {
    document.querySelectorAll("form[data-live]").forEach(function (form) {
      var target = document.querySelector(form.getAttribute("data-live-target"));
      if (!target) return;
      var timer = null;
      var seq = 0;
      function refresh() {
        var mine = ++seq;
        var query = new URLSearchParams(new FormData(form));
        query.delete("csrf");
        window.consoleFetch(form.getAttribute("data-live") + "?" + query.toString())
          .then(function (response) { return response.text(); })
          .then(function (html) { if (mine === seq) target.innerHTML = html; });
      }
      form.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(refresh, 250);
      });
    });
  }

  // A link opened in the tab that already shows the sign-in page changes only its fragment: no new
  // page loads, so the fragment is read when it changes too.
  window.addEventListener("hashchange", signIn);

  document.addEventListener("DOMContentLoaded", function () {
    signIn();
    menu();
    confirmations();
    autosubmit();
    live();
  });
})();
