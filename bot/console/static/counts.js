/* Live figures while a form is being filled in (no build step, no framework).

   A form with data-count="URL" asks URL (GET, the form's fields as the query, the CSRF token left
   out) a moment after the last keystroke or change, and shows the answer's "text" in the element
   named by data-count-target. When the answer has a "position" (a 1-based column, in characters, of
   a mistake in the field named by data-count-field), the element named by data-count-echo shows that
   field's text with the character at the position marked; data-count-on="name …" limits the fields
   sent and those whose changes ask again. A question too long for a URL is posted (with the CSRF
   header) to the same URL. Answers arrive in order: a slower, older one never overwrites a newer one.

   An element with data-poll="URL" asks URL every data-every milliseconds (default 3000) while the
   page is visible, and puts each value of the answer's "fields" into its descendant with the same
   data-field name; it stops once the answer says "final". Everything is put in the page as text,
   never as markup. */
(function () {
  "use strict";

  var DELAY = 250; // ms after the last keystroke

  var LONGEST_URL = 6000; // servers refuse request lines beyond 8 KB: a longer question is posted

  function query(form, only) {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrf" && typeof value === "string" && (!only.length || only.indexOf(key) >= 0)) {
        params.append(key, value);
      }
    });
    return params.toString();
  }

  function request(url, body) {
    var options = {credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (url.length + body.length + 1 <= LONGEST_URL) {
      return {url: url + "?" + body, options: options};
    }
    var meta = document.querySelector('meta[name="csrf-token"]');
    options.method = "POST";
    options.body = body;
    options.headers["Content-Type"] = "application/x-www-form-urlencoded";
    options.headers["X-CSRF-Token"] = meta ? meta.getAttribute("content") : "";
    return {url: url, options: options};
  }

  function echo(target, text, position) {
    target.textContent = "";
    if (!position) {
      target.hidden = true;
      return;
    }
    var chars = Array.from(text); // code points, as the server counts columns
    var at = Math.min(position - 1, chars.length);
    target.appendChild(document.createTextNode(chars.slice(0, at).join("")));
    var mark = document.createElement("mark");
    mark.textContent = at < chars.length ? chars[at] : "\u2009"; // a thin space marks "at the end"
    target.appendChild(mark);
    target.appendChild(document.createTextNode(chars.slice(at + 1).join("")));
    target.hidden = false;
  }

  function attach(form) {
    var url = form.getAttribute("data-count");
    var target = document.getElementById(form.getAttribute("data-count-target"));
    var echoTarget = document.getElementById(form.getAttribute("data-count-echo") || "");
    var field = form.getAttribute("data-count-field");
    var timer = null;
    var asked = 0;
    var shown = 0;
    var controller = null;
    // data-count-on="a b": only these fields are sent, and only their changes ask again (typing a
    // notice's text does not change its audience); without it, every field.
    var on = (form.getAttribute("data-count-on") || "").split(/\s+/).filter(Boolean);

    function ask() {
      var number = ++asked;
      if (controller) {
        controller.abort();
      }
      controller = typeof AbortController === "function" ? new AbortController() : null;
      target.setAttribute("aria-busy", "true");
      var asking = request(url, query(form, on));
      asking.options.signal = controller ? controller.signal : undefined;
      fetch(asking.url, asking.options).then(function (response) {
        return response.json();
      }).then(function (answer) {
        if (number < shown) {
          return;
        }
        shown = number;
        target.textContent = answer.text || "";
        target.classList.toggle("live-error", !answer.ok);
        target.classList.toggle("live-ok", !!answer.ok);
        target.removeAttribute("aria-busy");
        if (echoTarget && field && form.elements[field]) {
          echo(echoTarget, form.elements[field].value, answer.ok ? null : answer.position);
        }
      }).catch(function () {
        target.removeAttribute("aria-busy"); // aborted by a newer question, or offline: keep the last answer
      });
    }

    function later(event) {
      if (on.length && event && event.target && on.indexOf(event.target.name) < 0) {
        return;
      }
      window.clearTimeout(timer);
      timer = window.setTimeout(ask, DELAY);
    }

    form.addEventListener("input", later);
    form.addEventListener("change", later);
    // No question on load: the page came with the answer for what the form holds.
  }

  function poll(element) {
    var url = element.getAttribute("data-poll");
    var every = parseInt(element.getAttribute("data-every") || "3000", 10);
    var timer = null;

    function fill(fields) {
      Object.keys(fields).forEach(function (name) {
        var cells = element.querySelectorAll("[data-field=\"" + name + "\"]");
        for (var i = 0; i < cells.length; i++) {
          cells[i].textContent = String(fields[name]);
        }
      });
    }

    function ask() {
      if (document.hidden) {
        timer = window.setTimeout(ask, every);
        return;
      }
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) {
          return response.json();
        }).then(function (answer) {
          fill(answer.fields || {});
          if (!answer.final) {
            timer = window.setTimeout(ask, every);
          }
        }).catch(function () {
          timer = window.setTimeout(ask, every * 2);
        });
    }

    timer = window.setTimeout(ask, every);
  }

  function start() {
    var forms = document.querySelectorAll("form[data-count]");
    for (var i = 0; i < forms.length; i++) {
      attach(forms[i]);
    }
    var polled = document.querySelectorAll("[data-poll]");
    for (var j = 0; j < polled.length; j++) {
      poll(polled[j]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
