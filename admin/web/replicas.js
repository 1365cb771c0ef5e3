// Sluice web view, replicas panel: with several replicas on etcd (store.etcd), who
// leads, what each replica's data planes serve, whose config differs, and whether this
// replica reaches etcd. Absent when Sluice runs alone (GET /api/v1/replicas answers 404).
// Every value from the API is inserted as text, never as HTML.
"use strict";
(function () {
  function h(tag, cls, ...kids) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  let section = null;
  function place() {
    if (section) return section.lastChild;
    section = h("section", null, h("h2", null, "Replicas"), h("div", null));
    section.id = "replicas";
    const nodes = document.getElementById("nodes");
    const before = nodes ? nodes.closest("section") : null;
    document.querySelector("main").insertBefore(section, before);
    return section.lastChild;
  }
  function ago(t) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000));
    return isFinite(s) ? s + " s ago" : "-";
  }
  function render(v) {
    const root = place();
    root.replaceChildren();
    const card = h("div", "card");
    card.append(h("div", "facts",
      h("span", null, "leader ", h("b", null, v.leader || "none")),
      h("span", null, "this page from ", h("b", null, v.self || "?")),
      h("span", null, (v.replicas || []).length + " live")));
    const problem = (text) => card.append(h("p", "message", h("span", "badge Failed", "!"), " ", text));
    if (v.error) problem("etcd unreachable from this replica (" + v.error + "): it serves the last weights it has; nothing is decided until a replica reaches etcd");
    else if (!v.leader) problem("no replica leads: nothing is decided until one is elected");
    if (v.configMismatch) problem("this replica's config differs from the leader's: it does not lead; give every replica the same files");
    const tb = h("tbody");
    for (const r of v.replicas || []) {
      const names = Object.keys(r.appliedWeights || {}).sort();
      const applied = names.length ? names.map(n => {
        const f = (r.refused || {})[n];
        return h("div", null, n + " ", h("b", null, r.appliedWeights[n] + "%"),
          f ? h("div", "why", "refused a newer state: " + f.error) : null);
      }) : [h("span", "why", "nothing applied yet")];
      const differs = v.leaderConfigDigest && r.configDigest !== v.leaderConfigDigest;
      tb.append(h("tr", null,
        h("td", null, h("b", null, r.id), h("div", "why", r.admin)),
        h("td", null, r.leader ? h("span", "badge Healthy", "leader") : h("span", "badge", "follower")),
        h("td", null, ...applied),
        h("td", null, h("code", null, r.configDigest || "-"), differs ? h("div", null, h("span", "badge Failed", "differs from the leader's")) : null),
        h("td", null, ago(r.lastSeen))));
    }
    card.append(h("table", null, h("thead", null, h("tr", null,
      h("th", null, "replica"), h("th", null, "role"), h("th", null, "serves (canary weight)"),
      h("th", null, "config digest"), h("th", null, "last seen"))), tb));
    root.append(card);
    document.body.dataset.replicas = "1";
  }
  async function refresh() {
    try {
      const r = await fetch("/api/v1/replicas", { cache: "no-store" });
      if (r.status === 404) {
        if (section) { section.remove(); section = null; }
        return;
      }
      if (r.ok) render(await r.json());
    } catch (e) { /* the rollouts panel reports a lost connection */ }
  }
  refresh();
  setInterval(refresh, 2000);
})();
