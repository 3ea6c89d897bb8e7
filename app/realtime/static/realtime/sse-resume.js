/* Resume SSE streams from the last event received, whatever ended them.
 *
 * A browser's EventSource resumes with Last-Event-ID after a network error, but an HTTP error
 * (a 502 while a Pushpin node restarts) closes it for good; htmx's SSE extension then opens a
 * new EventSource, which would start from "now" and silently skip what was published meanwhile.
 * This hook gives the new EventSource the last id seen, so the server replays the gap.
 */
(function () {
  "use strict";
  var lastIds = {};

  htmx.createEventSource = function (url) {
    var target = url;
    if (lastIds[url]) {
      target += (url.indexOf("?") === -1 ? "?" : "&") + "lastEventId=" + encodeURIComponent(lastIds[url]);
    }
    var source = new EventSource(target);
    var add = source.addEventListener.bind(source);
    var tracked = {};
    var record = function (event) {
      // "error" marks a stream-error (e.g. forbidden); it is not a position to resume from.
      if (event.lastEventId && event.lastEventId !== "error") {
        lastIds[url] = event.lastEventId;
      }
    };
    // Record the id before htmx's listener for every event type htmx listens to.
    source.addEventListener = function (type, listener, options) {
      if (!tracked[type]) {
        tracked[type] = true;
        add(type, record);
      }
      add(type, listener, options);
    };
    source.addEventListener("stream-reset", function (event) {
      console.warn("event stream reset: events older than the server keeps were skipped", event.data);
    });
    return source;
  };
})();
