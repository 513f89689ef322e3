/* The live check-in board (written for this project, no framework).

   <div data-events="URL" data-fragment="URL"> holds the board. An EventSource on data-events gets a
   "board" event (data: the board's new version) whenever the committee's board changes; the page then
   fetches data-fragment (server-rendered, escaped HTML) and puts it in place. The browser reconnects a
   dropped stream by itself (the server says after how long) and sends the last version it saw, so a
   change made while it was away still arrives. An "end" event means the session is over: the page
   reloads, which leads to the sign-in. The element with data-live-status says which of these holds. */
(function () {
  "use strict";

  function start() {
    var box = document.querySelector("[data-events]");
    if (!box || typeof window.EventSource !== "function") {
      return;
    }
    var status = document.querySelector("[data-live-status]");
    var shown = (box.querySelector("[data-board-version]") || box).getAttribute("data-board-version") || "";
    var loading = false;
    var wanted = "";
    var source = null;

    function say(state) {
      if (!status) {
        return;
      }
      status.textContent = status.getAttribute("data-text-" + state) || "";
      status.setAttribute("data-state", state);
    }

    function refresh() {
      if (loading) {
        return;
      }
      loading = true;
      var asked = wanted;
      fetch(box.getAttribute("data-fragment"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (response) {
          if (response.redirected || !response.ok) {
            throw new Error("board " + response.status);
          }
          return response.text();
        }).then(function (html) {
          box.innerHTML = html;
          var inner = box.querySelector("[data-board-version]");
          shown = inner ? inner.getAttribute("data-board-version") : asked;
          box.dispatchEvent(new CustomEvent("board:updated", {bubbles: true}));
        }).catch(function () {
          window.location.reload(); // signed out meanwhile, or the committee left the member's area
        }).finally(function () {
          loading = false;
          if (wanted && wanted !== shown && wanted !== asked) {
            refresh();
          }
        });
    }

    function connect() {
      source = new EventSource(box.getAttribute("data-events"), {withCredentials: true});
      source.addEventListener("open", function () { say("live"); });
      source.addEventListener("board", function (event) {
        say("live");
        wanted = event.data;
        if (wanted !== shown) {
          refresh();
        }
      });
      source.addEventListener("end", function () {
        source.close();
        say("ended");
        window.location.reload();
      });
      source.addEventListener("error", function () {
        say("lost");
        if (source.readyState === EventSource.CLOSED) { // refused (e.g. 404): try again later
          window.setTimeout(connect, 10000);
        }
      });
    }

    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
