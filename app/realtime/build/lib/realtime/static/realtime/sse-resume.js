/* Resume SSE streams from the last event received, whatever ended them.
 *
 * A browser's EventSource resumes with Last-Event-ID after a network error, but an HTTP error
 * (a 502 while a Pushpin node restarts) closes it for good; htmx's SSE extension then opens a
 * new EventSource, which would start from "now" and silently skip what was published meanwhile.
 * This hook gives the new EventSource the last id seen, so the server replays the gap.
 *
 * A gap longer than the server replays (REALTIME_REPLAY_MAX_EVENTS / _AGE) ends in
 * `stream-reset`: the updates in between are gone, so the page reloads to show current values,
 * after a random delay so that many tabs coming back together do not all reload at once.
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
      console.warn("event stream reset: missed more updates than the server replays", event.data);
      source.close();
      window.setTimeout(function () { window.location.reload(); }, Math.random() * 3000);
    });
    return source;
  };
})();
