"use strict";
// The review page of rareid search / rareid serve. Draws one page of queries at a time from the
// inlined JSON (thumbnails load lazily), keeps the reviewer's marks in localStorage and turns
// them into the labels CSV that `rareid calibrate --labels` reads.
(function () {
  const data = JSON.parse(document.getElementById("rareid-data").textContent);
  const $ = (id) => document.getElementById(id);
  const storeKey = "rareid-marks:" + data.key;
  const view = { order: [], page: 0, size: 25, focus: -1, match: -1 };
  let marks = {};
  try { marks = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch (error) { marks = {}; }

  function saveMarks() {
    try { localStorage.setItem(storeKey, JSON.stringify(marks)); } catch (error) { /* private mode: marks live until the page closes */ }
  }
  function markOf(query, match) {
    return (marks[query.name] || {})[data.gallery[match.g].name] || "";
  }
  function setMark(query, match, value) {
    const name = data.gallery[match.g].name;
    const own = marks[query.name] || (marks[query.name] = {});
    if (value) { own[name] = value; } else { delete own[name]; }
    if (!Object.keys(own).length) { delete marks[query.name]; }
    saveMarks();
  }
  const reviewed = (query) => Boolean(marks[query.name]);
  const number = (value) => (value === null || value === undefined ? "n/a" : Number(value).toPrecision(4));

  function levels() {
    const seen = new Set(data.queries.map((query) => String(query.level)));
    const select = $("filter-level");
    const current = select.value;
    select.length = 1;
    Array.from(seen).sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).forEach((level) => {
      select.add(new Option(level, level));
    });
    select.value = seen.has(current) ? current : "";
  }

  function filterAndSort() {
    const name = $("filter-name").value.trim().toLowerCase();
    const verdict = $("filter-verdict").value;
    const level = $("filter-level").value;
    const review = $("filter-review").value;
    const order = [];
    data.queries.forEach((query, position) => {
      if (name && !query.label.toLowerCase().includes(name) && !query.name.toLowerCase().includes(name)) return;
      if (level && String(query.level) !== level) return;
      if (verdict === "any-same") {
        if (!query.matches.some((match) => match.v === "same")) return;
      } else if (verdict && (!query.matches.length || query.matches[0].v !== verdict)) return;
      if (review === "reviewed" && !reviewed(query)) return;
      if (review === "unreviewed" && reviewed(query)) return;
      order.push(position);
    });
    const sort = $("sort").value;
    const top = (position) => { const first = data.queries[position].matches[0]; return first ? first.o : Infinity; };
    if (sort === "name") order.sort((a, b) => data.queries[a].label.localeCompare(data.queries[b].label, undefined, { numeric: true }));
    if (sort === "distance") order.sort((a, b) => top(a) - top(b));
    if (sort === "distance-desc") order.sort((a, b) => top(b) - top(a));
    if (sort === "level") order.sort((a, b) => String(data.queries[a].level).localeCompare(String(data.queries[b].level), undefined, { numeric: true }));
    view.order = order;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function image(entry, alt) {
    const node = document.createElement("img");
    node.loading = "lazy";
    node.decoding = "async";
    node.alt = alt;
    if (entry.thumb) node.src = entry.thumb;
    node.dataset.full = entry.full || entry.thumb || "";
    node.dataset.name = entry.name;
    return node;
  }

  function drawMatch(query, match, rank) {
    const entry = data.gallery[match.g];
    const item = element("li", "match " + match.v);
    item.dataset.rank = String(rank);
    item.appendChild(image(entry, "match " + rank + ": " + entry.name));
    item.appendChild(element("div", "name", "#" + rank + " " + entry.name));
    let text = data.rerank ? "re-ranked " + number(match.o) + ", d " + number(match.d) : "d " + number(match.d);
    if (match.t !== null && match.t !== undefined) {
      text += (match.v === "same" ? " \u2264 " : " > ") + number(match.t) + ": " + match.v;
    } else {
      text += ": " + match.v;
    }
    const distance = element("div", "dist", text);
    if (match.r) distance.title = match.r;
    item.appendChild(distance);
    if (data.rerank) {
      item.appendChild(element("div", "moved", match.p === rank ? "re-ranking kept it" : "re-ranking moved it (d rank " + match.p + ")"));
    }
    if (match.x) item.appendChild(element("div", "moved", match.x));
    if (match.s && match.s !== "ok") item.appendChild(element("div", "stale", "gallery file " + match.s));
    const review = element("div", "review");
    [["correct", "\u2713", "same person: correct"], ["wrong", "\u2717", "another person: wrong"]].forEach(([value, symbol, title]) => {
      const button = element("button", markOf(query, match) === value ? "on" : "", symbol);
      button.type = "button";
      button.title = title;
      button.dataset.mark = value;
      review.appendChild(button);
    });
    item.appendChild(review);
    const mark = markOf(query, match);
    if (mark) item.classList.add("marked-" + mark);
    return item;
  }

  function drawQuery(position) {
    const query = data.queries[position];
    const section = element("section", "query");
    section.dataset.q = String(position);
    const crop = element("figure", "crop");
    crop.appendChild(image(query, "query " + query.label));
    const caption = element("figcaption");
    caption.appendChild(element("strong", "label", query.label));
    const facts = ["level " + query.level, query.size];
    if (query.rate !== null && query.rate !== undefined) facts.push("rate " + Number(query.rate).toPrecision(3));
    caption.appendChild(element("div", "facts", facts.filter(Boolean).join(", ")));
    if (query.flags) caption.appendChild(element("div", "stale", "flagged: " + query.flags));
    crop.appendChild(caption);
    section.appendChild(crop);
    const list = element("ol", "matches");
    query.matches.forEach((match, index) => list.appendChild(drawMatch(query, match, index + 1)));
    if (!query.matches.length) list.appendChild(element("li", "error", query.error || "no match"));
    section.appendChild(list);
    return section;
  }

  function draw() {
    const pages = Math.max(1, Math.ceil(view.order.length / view.size));
    view.page = Math.min(Math.max(view.page, 0), pages - 1);
    const list = $("list");
    list.textContent = "";
    const shown = view.order.slice(view.page * view.size, (view.page + 1) * view.size);
    const fragment = document.createDocumentFragment();
    shown.forEach((position) => fragment.appendChild(drawQuery(position)));
    list.appendChild(fragment);
    $("page-info").textContent = "page " + (view.page + 1) + " of " + pages;
    $("prev").disabled = view.page === 0;
    $("next").disabled = view.page >= pages - 1;
    summarize();
    focus(Math.min(view.focus, shown.length - 1), view.match, false);
  }

  function counts() {
    let correct = 0, wrong = 0;
    Object.values(marks).forEach((own) => Object.values(own).forEach((mark) => { if (mark === "correct") correct++; else wrong++; }));
    return [correct, wrong];
  }
  function summarize() {
    const [correct, wrong] = counts();
    $("summary").textContent = view.order.length + " of " + data.queries.length + " queries shown; marks: " +
      correct + " correct, " + wrong + " wrong";
  }

  function refresh() { filterAndSort(); view.page = 0; view.focus = -1; draw(); }

  function focus(row, match, scroll) {
    document.querySelectorAll(".focused").forEach((node) => node.classList.remove("focused"));
    const rows = document.querySelectorAll("#list .query");
    view.focus = row; view.match = match;
    if (row < 0 || row >= rows.length) { view.focus = -1; return; }
    rows[row].classList.add("focused");
    const items = rows[row].querySelectorAll(".match");
    if (match >= items.length) view.match = items.length - 1;
    if (view.match >= 0) items[view.match].classList.add("focused");
    if (scroll) rows[row].scrollIntoView({ block: "nearest" });
  }

  function openViewer(img) {
    if (!img || !img.dataset.full) return;
    $("viewer-img").src = img.dataset.full;
    $("viewer-name").textContent = img.dataset.name;
    $("viewer-link").href = img.dataset.full;
    $("viewer").hidden = false;
  }
  function closeViewer() { $("viewer").hidden = true; $("viewer-img").removeAttribute("src"); }

  // The labels CSV of `rareid calibrate --labels`: gallery images marked correct for a query
  // are that query's person (named by its file name without extension); queries that share
  // such an image are one person. An image only
  // ever marked wrong is a person of its own ("unconfirmed-N"); an image marked correct and
  // wrong for one person is left out and counted.
  function labels() {
    const parent = {};
    const find = (name) => { while (parent[name] !== name) { parent[name] = parent[parent[name]]; name = parent[name]; } return name; };
    const union = (a, b) => { const ra = find(a), rb = find(b); if (ra !== rb) parent[ra < rb ? rb : ra] = ra < rb ? ra : rb; };
    const firstQuery = {};
    Object.entries(marks).forEach(([query, own]) => Object.entries(own).forEach(([image, mark]) => {
      if (mark !== "correct") return;
      if (!(query in parent)) parent[query] = query;
      if (image in firstQuery) union(query, firstQuery[image]); else firstQuery[image] = query;
    }));
    const labelOf = {};
    data.queries.forEach((query) => { labelOf[query.name] = query.label; });
    const person = (query) => (labelOf[find(query)] || find(query)).replace(/\.[A-Za-z0-9]+$/, "");
    const rows = new Map();
    const conflicts = new Set();
    Object.entries(marks).forEach(([query, own]) => Object.entries(own).forEach(([image, mark]) => {
      if (mark === "correct") rows.set(image, person(query));
    }));
    Object.entries(marks).forEach(([query, own]) => Object.entries(own).forEach(([image, mark]) => {
      if (mark === "wrong" && query in parent && rows.get(image) === person(query)) conflicts.add(image);
    }));
    conflicts.forEach((image) => rows.delete(image));
    let unconfirmed = 0;
    Object.values(marks).forEach((own) => Object.entries(own).forEach(([image, mark]) => {
      if (mark === "wrong" && !rows.has(image) && !conflicts.has(image)) rows.set(image, "unconfirmed-" + ++unconfirmed);
    }));
    const quote = (text) => (/[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text);
    const lines = ["path,person"];
    rows.forEach((who, image) => lines.push(quote(image) + "," + quote(who)));
    const size = {};
    rows.forEach((who) => { size[who] = (size[who] || 0) + 1; });
    const people = Object.keys(size).length;
    const paired = Object.values(size).filter((count) => count >= 2).length;
    return { text: lines.join("\n") + "\n", images: rows.size, people, paired, unconfirmed, conflicts: conflicts.size };
  }

  function exportLabels() {
    const result = labels();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([result.text], { type: "text/csv" }));
    link.download = "labels.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    $("summary").textContent = "labels.csv: " + result.images + " images of " + result.people + " people (" +
      result.paired + " with two or more images, " + result.unconfirmed + " unconfirmed, each a person of its own), " +
      result.conflicts + " images marked both correct and wrong for one person left out";
  }

  document.addEventListener("click", (event) => {
    const target = event.target;
    if (target.closest("#viewer")) { closeViewer(); return; }
    const button = target.closest("button[data-mark]");
    if (button) {
      const item = button.closest(".match");
      const query = data.queries[Number(button.closest(".query").dataset.q)];
      const match = query.matches[Number(item.dataset.rank) - 1];
      setMark(query, match, markOf(query, match) === button.dataset.mark ? "" : button.dataset.mark);
      const rows = Array.from(document.querySelectorAll("#list .query"));
      const row = rows.indexOf(button.closest(".query"));
      item.replaceWith(drawMatch(query, match, Number(item.dataset.rank)));
      focus(row, Number(item.dataset.rank) - 1, false);
      summarize();
      return;
    }
    if (target.tagName === "IMG" && target.closest("#list")) openViewer(target);
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest && event.target.closest("input, select, textarea")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const rows = document.querySelectorAll("#list .query");
    const row = view.focus;
    const key = event.key;
    const current = () => {
      if (row < 0 || row >= rows.length) return null;
      const query = data.queries[Number(rows[row].dataset.q)];
      return { query, match: view.match >= 0 ? query.matches[view.match] : null };
    };
    if (key === "Escape") { closeViewer(); }
    else if (key === "j" || key === "ArrowDown") {
      if (row + 1 < rows.length) focus(row + 1, view.match, true);
      else if ((view.page + 1) * view.size < view.order.length) { view.page++; view.focus = 0; draw(); focus(0, view.match, true); }
    } else if (key === "k" || key === "ArrowUp") {
      if (row > 0) focus(row - 1, view.match, true);
      else if (view.page > 0) { view.page--; view.focus = view.size - 1; draw(); focus(view.size - 1, view.match, true); }
    } else if (key === "l" || key === "ArrowRight") focus(Math.max(row, 0), view.match + 1, true);
    else if (key === "h" || key === "ArrowLeft") focus(Math.max(row, 0), Math.max(view.match - 1, -1), true);
    else if (key === "n" || key === "PageDown") { view.page++; view.focus = 0; draw(); }
    else if (key === "p" || key === "PageUp") { view.page--; view.focus = 0; draw(); }
    else if (key === "/") { $("filter-name").focus(); }
    else if (key === "Enter" || key === "o") {
      if (row < 0) return;
      const items = rows[row].querySelectorAll(".match img");
      openViewer(view.match >= 0 ? items[view.match] : rows[row].querySelector(".crop img"));
    } else if (key === "c" || key === "x" || key === "u") {
      const found = current();
      if (!found || !found.match) return;
      setMark(found.query, found.match, key === "c" ? "correct" : key === "x" ? "wrong" : "");
      const item = rows[row].querySelectorAll(".match")[view.match];
      item.replaceWith(drawMatch(found.query, found.match, view.match + 1));
      focus(row, view.match, false);
      summarize();
    } else return;
    event.preventDefault();
  });

  ["filter-name", "filter-verdict", "filter-level", "filter-review", "sort"].forEach((id) => {
    $(id).addEventListener(id === "filter-name" ? "input" : "change", refresh);
  });
  $("page-size").addEventListener("change", () => { view.size = Number($("page-size").value); refresh(); });
  $("prev").addEventListener("click", () => { view.page--; view.focus = -1; draw(); });
  $("next").addEventListener("click", () => { view.page++; view.focus = -1; draw(); });
  $("export").addEventListener("click", exportLabels);
  $("clear-marks").addEventListener("click", () => { marks = {}; saveMarks(); draw(); });

  // rareid serve: query crops dropped or chosen here are searched by POST /api/search
  function galleryEntry(match) {
    const found = data.gallery.findIndex((entry) => entry.name === match.gallery);
    if (found >= 0) return found;
    data.gallery.push({ name: match.gallery, thumb: match.thumb, full: match.full });
    return data.gallery.length - 1;
  }
  async function upload(file) {
    const url = data.api + "?name=" + encodeURIComponent(file.name);
    let answer;
    try {
      const response = await fetch(url, { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
    } catch (error) {
      $("upload-status").textContent = file.name + ": " + error.message;
      $("upload-status").className = "error";
      return;
    }
    const query = answer.query;
    const thumb = URL.createObjectURL(file);
    data.queries.unshift({
      name: query.name + " #" + (data.queries.length + 1), label: query.name, thumb, full: thumb,
      level: query.level, size: query.height + "x" + query.width + " px", rate: query.rate, flags: query.flags || "",
      matches: answer.matches.map((match) => ({
        g: galleryEntry(match), d: match.distance, o: match.distance, t: match.threshold, v: match.verdict,
        r: match.verdict_reason || "", p: match.rank, s: match.gallery_status || "ok", x: "",
      })),
    });
    $("upload-status").textContent = "searched " + query.name + " (level " + query.level + ")";
    $("upload-status").className = "";
    levels();
    refresh();
  }
  if (data.mode === "serve") {
    const drop = $("drop");
    drop.hidden = false;
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      Array.from(event.dataTransfer.files).reduce((chain, file) => chain.then(() => upload(file)), Promise.resolve());
    });
    $("upload").addEventListener("change", () => {
      Array.from($("upload").files).reduce((chain, file) => chain.then(() => upload(file)), Promise.resolve());
    });
  }
  if (!data.labels) document.querySelector(".review-tools").hidden = true;

  $("title").textContent = data.title;
  $("caption").textContent = data.caption;
  levels();
  refresh();
  document.body.dataset.ready = "true";
})();
