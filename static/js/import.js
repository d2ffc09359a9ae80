// Import job page: poll the job's progress endpoint every second and update the bar and
// the status line; when the job finishes, reload to show the result and the error table.
// Plain JavaScript, no dependencies (served from static/, no CDN).
(function () {
  "use strict";

  var box = document.querySelector("[data-import-progress]");
  if (!box) {
    return;
  }
  var url = box.getAttribute("data-import-progress");
  var bar = box.querySelector("progress");
  var line = box.querySelector("[data-import-message]");
  var INTERVAL = 1000;

  function show(data) {
    if (data.total_rows > 0) {
      bar.max = data.total_rows;
      bar.value = Math.min(data.processed_rows, data.total_rows);
    } else {
      bar.removeAttribute("value"); // indeterminate until the row count is known
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
