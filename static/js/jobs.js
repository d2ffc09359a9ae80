// Background job pages (jobs, candidate imports): poll the progress endpoint every second
// and update the bar and the status line; when the job finishes, reload to show its
// outcome (the JSON's done, total, percent, message, finished). A box marked
// data-job-follow-up follows what keeps going after the job (`follow_up` in the JSON,
// e.g. the PDFs of a batch issue) the same way.
// Plain JavaScript, no dependencies (served from static/, no CDN).
(function () {
  "use strict";

  var box = document.querySelector("[data-job-progress]");
  if (!box) {
    return;
  }
  var url = box.getAttribute("data-job-progress");
  var bar = box.querySelector("progress");
  var line = box.querySelector("[data-job-message]");
  var INTERVAL = 1000;
  var followUp = box.hasAttribute("data-job-follow-up");

  function show(data) {
    if (data.total > 0) {
      bar.max = data.total;
      bar.value = Math.min(data.done, data.total);
    } else {
      bar.removeAttribute("value"); // indeterminate until the size is known
    }
    bar.textContent = data.percent + "%";
    line.textContent = data.message;
  }

  function poll() {
    fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (followUp) {
          data = data.follow_up || { done: 0, total: 0, percent: 0, message: "", finished: true };
          data.percent = data.total ? Math.floor((data.done * 100) / data.total) : 100;
        }
        show(data);
        if (data.finished) {
          window.location.reload();
        } else {
          window.setTimeout(poll, INTERVAL);
        }
      })
      .catch(function () {
        window.setTimeout(poll, INTERVAL * 3); // server busy or offline: back off
      });
  }

  window.setTimeout(poll, INTERVAL);
})();
