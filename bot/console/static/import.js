/* Registry import (written for this project, no framework).

   form[data-upload]: the file is posted with XMLHttpRequest, which reports the upload's progress to
   the <progress data-upload-progress> (fetch cannot), with the CSRF token as a header so that the
   server streams the file instead of reading it whole; the answer (the import's page, or the form with
   what went wrong) replaces the page. Without JavaScript the form simply posts.

   [data-import-progress="URL"]: asks URL (JSON) every second and moves the bar and the words; when the
   import is over, the page is loaded again to show its report. */
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function upload(form) {
    var bar = form.querySelector("[data-upload-progress]");
    form.addEventListener("submit", function (event) {
      if (typeof window.FormData !== "function") {
        return;
      }
      event.preventDefault();
      var button = form.querySelector('button[type="submit"]');
      if (button) {
        button.disabled = true;
      }
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("X-CSRF-Token", csrf());
      if (bar) {
        bar.hidden = false;
        request.upload.addEventListener("progress", function (e) {
          if (e.lengthComputable) {
            bar.max = e.total;
            bar.value = e.loaded;
          }
        });
      }
      request.addEventListener("load", function () {
        if (request.responseURL && request.responseURL !== window.location.href && request.status < 400) {
          window.location.assign(request.responseURL);
          return;
        }
        document.open();
        document.write(request.responseText);
        document.close();
      });
      request.addEventListener("error", function () {
        if (button) {
          button.disabled = false;
        }
        if (bar) {
          bar.hidden = true;
        }
      });
      request.send(new FormData(form));
    });
  }

  function follow(box) {
    var url = box.getAttribute("data-import-progress");
    var bar = box.querySelector("[data-import-bar]");
    var label = box.querySelector("[data-import-label]");
    var rows = box.querySelector("[data-import-rows]");

    function ask() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) {
          if (!response.ok) {
            throw new Error("progress " + response.status);
          }
          return response.json();
        }).then(function (answer) {
          if (answer.final) {
            window.location.reload();
            return;
          }
          if (bar) {
            bar.value = answer.percent;
            bar.textContent = answer.percent + "%";
          }
          if (label) {
            label.textContent = answer.label;
          }
          if (rows && answer.total !== null) {
            rows.textContent = answer.done + " / " + answer.total;
          }
          window.setTimeout(ask, 1000);
        }).catch(function () {
          window.setTimeout(ask, 3000);
        });
    }

    window.setTimeout(ask, 1000);
  }

  function start() {
    var forms = document.querySelectorAll("form[data-upload]");
    for (var i = 0; i < forms.length; i++) {
      upload(forms[i]);
    }
    var boxes = document.querySelectorAll("[data-import-progress]");
    for (var j = 0; j < boxes.length; j++) {
      follow(boxes[j]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
