/* One event stream per page: every SSE component of the page is swapped from one connection.
 *
 * A component only says which channel it reads (data-sse-channel) and which event it swaps
 * (sse-swap). Before htmx sets the page up, this script puts htmx's SSE extension on <body>
 * with one same-origin URL naming every channel of the page (/events/?channel=a&channel=b),
 * so a page costs one stream, however many components it shows: below HTTP/1.1's six
 * connections per origin, and one stream for Pushpin and nginx to hold per viewer.
 */
(function () {
  "use strict";

  function connect(body) {
    var parts = body.querySelectorAll("[data-sse-channel]");
    if (!parts.length || body.hasAttribute("sse-connect")) {
      return;
    }
    var channels = [];
    parts.forEach(function (part) {
      var channel = part.getAttribute("data-sse-channel");
      if (channels.indexOf(channel) === -1) {
        channels.push(channel);
      }
    });
    channels.sort();
    var query = channels.map(function (channel) {
      return "channel=" + encodeURIComponent(channel);
    }).join("&");
    var extensions = (body.getAttribute("hx-ext") || "").split(",").map(function (name) {
      return name.trim();
    }).filter(Boolean);
    if (extensions.indexOf("sse") === -1) {
      extensions.push("sse");
    }
    body.setAttribute("hx-ext", extensions.join(","));
    body.setAttribute("sse-connect", parts[0].getAttribute("data-sse-path") + "?" + query);
  }

  document.addEventListener("htmx:beforeProcessNode", function (event) {
    if (event.target === document.body) {
      connect(document.body);
    }
  });
})();
