// talprov status page: keeps the live region of a page up to date without reloads.
// It asks /ui/changes for requests changed since the newest change it has seen
// (the server answers from an index, so a poll costs what changed, not every
// request), swaps changed table rows in place, and re-fetches the region's
// small fragment when something it shows changed.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.live) { return; }
  var since = live.dataset.since || "";
  var seen = {};
  var lastRefresh = Date.now();
  var pending = false;  // something changed but the last re-fetch was too recent
  var everyMs = (parseInt(live.dataset.every || "2", 10) || 2) * 1000;
  var pollMs = 1500;
  live.querySelectorAll("tr[data-id]").forEach(function (tr) { seen[tr.dataset.id] = tr.dataset.updated; });

  function refresh() {
    lastRefresh = Date.now();
    pending = false;
    return fetch(live.dataset.live, { credentials: "same-origin" }).then(function (r) {
      if (r.redirected || r.status === 401) { window.location.assign("/ui/sign-in"); return; }
      if (r.ok) { return r.text().then(function (html) { live.innerHTML = html; }); }
    });
  }

  function apply(data) {
    var fresh = data.items.filter(function (item) { return seen[item.id] !== item.updated; });
    fresh.forEach(function (item) { seen[item.id] = item.updated; });
    if (data.watermark) { since = data.watermark; }
    if (!fresh.length) { return pending ? maybeRefresh() : null; }
    var mode = live.dataset.mode;
    if (mode === "rows") {
      var unknown = false;
      fresh.forEach(function (item) {
        var tr = live.querySelector('tr[data-id="' + CSS.escape(item.id) + '"]');
        if (!tr) { unknown = true; return; }
        var holder = document.createElement("tbody");
        holder.innerHTML = item.html;
        var row = holder.firstElementChild;
        if (row) { row.classList.add("changed"); tr.replaceWith(row); }
      });
      pending = pending || unknown || data.more;
      return maybeRefresh();
    }
    var watch = live.dataset.watch;
    var relevant = !watch || data.more || fresh.some(function (item) { return item.id === watch; });
    pending = pending || relevant;
    return watch && relevant ? refresh() : maybeRefresh();
  }

  function maybeRefresh() {
    return pending && Date.now() - lastRefresh >= everyMs ? refresh() : null;
  }

  function poll() {
    fetch("/ui/changes?since=" + encodeURIComponent(since), {
      credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (r) {
      if (r.status === 401) { window.location.assign("/ui/sign-in"); return null; }
      return r.ok ? r.json().then(apply) : null;
    }).catch(function () { /* the server may be restarting; try again */ })
      .then(function () { window.setTimeout(poll, pollMs); });
  }
  window.setTimeout(poll, pollMs);
})();
