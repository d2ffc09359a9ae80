// Score grid: keyboard-only entry. Enter or ArrowDown moves to the next row's score,
// ArrowUp to the previous one (Tab works natively); Enter on the last row, or
// Ctrl+Enter anywhere, saves the batch. The first empty score gets the focus on load.
// Plain JavaScript, no dependencies.
(function () {
  "use strict";
  var form = document.getElementById("score-grid");
  if (!form) {
    return;
  }
  var inputs = Array.prototype.slice.call(form.querySelectorAll("input.score-input:not([disabled])"));
  if (!inputs.length) {
    return;
  }

  function move(index) {
    var target = inputs[index];
    if (target) {
      target.focus();
      target.select();
    }
  }

  function save() {
    if (form.requestSubmit) {
      form.requestSubmit();
    } else {
      form.submit();
    }
  }

  inputs.forEach(function (input, index) {
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        if (event.ctrlKey || event.metaKey || index === inputs.length - 1) {
          save();
        } else {
          move(index + 1);
        }
      } else if (event.key === "ArrowDown") {
        event.preventDefault();
        move(index + 1);
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        move(index - 1);
      }
    });
  });

  var errorRow = form.querySelector("tr.has-error input.score-input");
  var firstEmpty = inputs.filter(function (input) { return !input.value; })[0];
  (errorRow || firstEmpty || inputs[0]).focus();
})();
