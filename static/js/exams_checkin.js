// Check-in desk: the scan field keeps the focus, so a barcode/QR scanner (which types
// the code and Enter) works without touching the mouse; after each result the field
// is empty and focused again. Plain JavaScript, no dependencies.
(function () {
  "use strict";
  var input = document.querySelector("input.scan-input");
  if (!input) {
    return;
  }
  input.value = "";
  input.focus();
  document.addEventListener("click", function (event) {
    var tag = event.target.tagName;
    if (tag !== "A" && tag !== "BUTTON" && tag !== "SELECT" && tag !== "INPUT") {
      input.focus();
    }
  });
})();
