// session-buddy dashboard: a refresh every few seconds that keeps filters and scroll,
// sortable tables, and (opt-in) a browser notification when a session starts to need
// someone. The pages work without it; a secured server's login is an HttpOnly cookie,
// which no script here can read.
"use strict";

const NOTIFY_KEY = "session-buddy-notify";
const REFRESH_MS = 5000;
let seenNeeding = null; // ids that needed someone at the last look

async function fetchPage(url) {
  const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  const text = await answer.text();
  return new DOMParser().parseFromString(text, "text/html");
}

function swap(doc) {
  const fresh = doc.getElementById("main");
  const main = document.getElementById("main");
  if (!fresh || !main) return;
  main.replaceWith(fresh);
  document.title = doc.title;
  wire();
  showNeeding();
}

function notifying() {
  return localStorage.getItem(NOTIFY_KEY) === "on" && "Notification" in window &&
    Notification.permission === "granted";
}

// The "needs you" count in the header, and a notification for each session that has
// started to need someone since the last look.
function showNeeding() {
  const main = document.getElementById("main");
  const ids = ((main && main.dataset.needsYou) || "").split(" ").filter(Boolean);
  const badge = document.getElementById("needs-you");
  if (badge) {
    badge.hidden = ids.length === 0;
    badge.textContent = ids.length + (ids.length === 1 ? " needs" : " need") + " you";
  }
  const fresh = seenNeeding === null ? [] : ids.filter((id) => !seenNeeding.has(id));
  if (fresh.length && notifying()) {
    const title = "session-buddy: " + fresh.length + (fresh.length === 1 ? " session needs" : " sessions need") + " you";
    new Notification(title, { body: fresh.join("\n"), tag: "session-buddy-needs-you" });
  }
  seenNeeding = new Set(ids);
}

function wireNotify() {
  const button = document.getElementById("notify");
  if (!button || !("Notification" in window) || Notification.permission === "denied") return;
  const label = () => {
    button.textContent = notifying() ? "Notifications on" : "Notify me";
    button.setAttribute("aria-pressed", notifying() ? "true" : "false");
  };
  button.hidden = false;
  label();
  button.addEventListener("click", async () => {
    if (notifying()) {
      localStorage.removeItem(NOTIFY_KEY);
    } else if ((await Notification.requestPermission()) === "granted") {
      localStorage.setItem(NOTIFY_KEY, "on");
    }
    label();
  });
}

async function show(url) {
  swap(await fetchPage(url));
}

function busy() {
  const active = document.activeElement;
  return active && active.closest && active.closest("form");
}

async function refresh() {
  if (document.hidden || busy()) return;
  const x = window.scrollX;
  const y = window.scrollY;
  await show(location.href);
  window.scrollTo(x, y);
}

function sortBy(table, column, th) {
  const body = table.tBodies[0];
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  const key = (row) => {
    const cell = row.cells[column];
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const number = Number(raw);
    return raw !== "" && !Number.isNaN(number) ? number : raw.toLowerCase();
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (ascending ? 1 : -1));
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  rows.forEach((row) => body.appendChild(row));
}

function wire() {
  document.querySelectorAll("table.sortable th").forEach((th) => {
    th.tabIndex = 0;
    const sort = () => sortBy(th.closest("table"), th.cellIndex, th);
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        sort();
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  wireNotify();
  showNeeding();
  const main = document.getElementById("main");
  if (!main || main.dataset.page === "") return; // locked: nothing to keep live
  document.getElementById("refresh").hidden = false;
  setInterval(refresh, REFRESH_MS);
});
