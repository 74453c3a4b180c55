// 发起转诊: the criteria checklist follows the direction; an urgent criterion raises the urgency
// and names the capability it needs; the suggestion list reloads (htmx) when its inputs change,
// and picking a suggestion fills the destination institution and department.
(function () {
  "use strict";
  var RANK = { routine: 0, urgent: 1, emergency: 2 };

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var form = document.getElementById("referral-form");
    if (!form) return;
    var direction = form.querySelector("[name=direction]");
    var urgency = form.querySelector("[name=urgency]");
    var capability = form.querySelector("[name=required_capability]");
    var institution = form.querySelector("[name=destination_institution]");
    var department = form.querySelector("[name=destination_department]");
    var suggestions = document.getElementById("suggestions");

    function refresh() { if (window.htmx && suggestions) window.htmx.trigger(suggestions, "refresh"); }

    function filterCriteria() {
      form.querySelectorAll(".criterion").forEach(function (row) {
        var shown = row.dataset.direction === direction.value;
        row.hidden = !shown;
        if (!shown) row.querySelector("input").checked = false;
      });
      form.querySelectorAll(".criteria-group").forEach(function (group) {
        group.hidden = !group.querySelector(".criterion:not([hidden])");
      });
    }

    function filterDepartments() {
      var chosen = institution.value;
      Array.prototype.forEach.call(department.options, function (option) {
        if (!option.value) return;
        option.hidden = option.dataset.institution !== chosen;
        if (option.hidden && option.selected) department.value = "";
      });
    }

    form.addEventListener("change", function (event) {
      var target = event.target;
      if (target === direction) { filterCriteria(); refresh(); }
      else if (target === urgency || target === capability || target.name === "wanted_from" || target.name === "wanted_to") refresh();
      else if (target === institution) filterDepartments();
      else if (target.name === "criteria" && target.checked) {
        var changed = false;
        var wanted = target.dataset.urgency;
        if (wanted && RANK[wanted] > RANK[urgency.value]) { urgency.value = wanted; changed = true; }
        if (target.dataset.capability && capability.value !== target.dataset.capability) {
          capability.value = target.dataset.capability; changed = true;
        }
        if (changed) refresh();
      }
    });

    document.addEventListener("click", function (event) {
      var button = event.target.closest(".pick-destination");
      if (!button) return;
      institution.value = button.dataset.institution;
      filterDepartments();
      department.value = button.dataset.department || "";
      document.querySelectorAll(".suggestion-list .list-group-item").forEach(function (item) { item.classList.remove("active-choice"); });
      button.closest(".list-group-item").classList.add("active-choice");
    });

    filterCriteria();
    filterDepartments();
  });
})();
