// The agent console. Talks only to the bridge's own API (same origin): the session cookie is
// HttpOnly, and every change carries the X-Hotline-Console header (the bridge's CSRF check).
"use strict";

const T = {
  zh: {
    title: "坐席台", lang: "English", append: "补充到工单", appended: "已补充到工单",
    wo_created: "待签收", wo_pushed: "待签收", wo_acknowledged: "已签收", wo_unit_returned: "单位退回", logout: "退出登录", login: "坐席登录",
    agent: "坐席工号", token: "令牌", signin: "登录", call: "当前通话", nocall: "空闲：没有通话",
    number: "来电号码", jurisdiction: "属地", nuisance: "骚扰来电标记", duration: "通话时长",
    keys: "一键联动", target: "联动对象", carry: "一键转接", three: "三方通话", leave: "退出三方",
    cancel: "取消三方", form: "转办工单", category: "诉求类别", time: "时间", place: "地点",
    people: "人员", event: "事件", request: "诉求", danger: "危及生命安全", violent: "有暴力风险",
    pop: "转入工单", ack: "签收", reason: "退回理由", return: "退回", orders: "我的工单",
    id: "编号", status: "状态", due: "时限",
    shortcuts: "快捷键：F2 一键转接 · F3 三方通话 · F4 退出三方 · F8 取消三方 · F9 签收",
    yes: "是", no: "否", unknown: "未知", ringing: "振铃中", badlogin: "工号或令牌错误",
    urgent: "紧急", normal: "一般", acked: "已签收", returned_ok: "已退回", needreason: "请填写退回理由",
    overdue: "已超时", nohandoff: "没有进行中的三方通话", oncall_needed: "没有通话",
    st_requested: "已发起", st_dialing: "正在呼叫", st_ringing: "对方振铃", st_answered: "对方已接听",
    st_returning: "对方未接，正在转回", st_returned: "已转回坐席", st_failed: "转接失败，通话仍在坐席",
    st_abandoned: "市民已挂机", st_lost: "结果未知", st_joining: "正在加入三方", st_active: "三方通话中",
    st_agent_left: "坐席已退出，市民与对方通话", st_cancelled: "已取消，市民与坐席通话",
    st_partner_failed: "对方未加入，市民与坐席通话", st_partner_left: "对方已挂机", st_ended: "通话结束",
    pe_acknowledged: "已签收", pe_returned: "已退回", pe_status_changed: "办理中", pe_closed: "已办结",
    by: "：", transfer_word: "转接", three_word: "三方", link_open: "实时连接正常", link_closed: "实时连接中断，正在重连",
  },
  en: {
    title: "agent console", lang: "中文", append: "Add to the record", appended: "added to the record",
    wo_created: "to acknowledge", wo_pushed: "to acknowledge", wo_acknowledged: "acknowledged",
    wo_unit_returned: "returned by the unit", logout: "Log out", login: "Agent login",
    agent: "Agent ID", token: "Token", signin: "Log in", call: "Current call", nocall: "Idle: no call",
    number: "Caller number", jurisdiction: "Jurisdiction", nuisance: "Nuisance flag", duration: "Time on call",
    keys: "Hotkeys", target: "Hand to", carry: "Carry transfer", three: "Three-way", leave: "Leave three-way",
    cancel: "Cancel three-way", form: "Handoff record", category: "Category", time: "Time", place: "Place",
    people: "People", event: "Event", request: "Request", danger: "Danger to life", violent: "Violent risk",
    pop: "Incoming handoff", ack: "Acknowledge (签收)", reason: "Reason to return", return: "Return (退回)",
    orders: "My work orders", id: "ID", status: "Status", due: "Due",
    shortcuts: "Shortcuts: F2 carry transfer · F3 three-way · F4 leave · F8 cancel · F9 acknowledge",
    yes: "yes", no: "no", unknown: "unknown", ringing: "ringing", badlogin: "Unknown agent or token",
    urgent: "URGENT", normal: "normal", acked: "acknowledged", returned_ok: "returned", needreason: "A reason is required",
    overdue: "overdue", nohandoff: "No three-way call in progress", oncall_needed: "Not on a call",
    st_requested: "requested", st_dialing: "dialing", st_ringing: "ringing", st_answered: "answered",
    st_returning: "not answered, coming back", st_returned: "back with an agent", st_failed: "failed; the citizen is still with you",
    st_abandoned: "the citizen hung up", st_lost: "outcome unknown", st_joining: "joining", st_active: "three-way active",
    st_agent_left: "you left; citizen and partner talking", st_cancelled: "cancelled; citizen and you talking",
    st_partner_failed: "partner did not join", st_partner_left: "partner hung up", st_ended: "ended",
    pe_acknowledged: "acknowledged", pe_returned: "returned", pe_status_changed: "in progress", pe_closed: "closed",
    by: ": ", transfer_word: "transfer", three_word: "three-way", link_open: "live", link_closed: "reconnecting",
  },
};

const S = { lang: localStorage.getItem("hb-lang") || "zh", site: "", agent: null, call: null, conference: null,
  pop: null, stream: null, lastId: null, timer: null, categories: [], advising: null, handoff: null };
const $ = (id) => document.getElementById(id);
const t = (key) => (T[S.lang][key] !== undefined ? T[S.lang][key] : key);

function applyLanguage() {
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  document.title = `${S.site || ""} ${t("title")}`.trim();
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  fillCategories();
  renderCall();
  renderHandoff();
  if (S.agent) setLink($("link").dataset.state);
}

async function api(method, path, body) {
  const headers = { "X-Hotline-Console": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  if (r.status !== 204) { try { data = await r.json(); } catch (e) { data = null; } }
  return { status: r.status, data };
}

function reasonOf(res) {
  return (res.data && res.data.error && res.data.error.reason) || `HTTP ${res.status}`;
}

// -- login ------------------------------------------------------------------------------------

async function boot() {
  applyLanguage();
  const me = await api("GET", "/v1/console/me");
  if (me.status === 200) return start(me.data);
  $("login").hidden = false;
  $("login-agent").focus();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await api("POST", "/v1/console/session",
    { agent: $("login-agent").value.trim(), token: $("login-token").value });
  $("login-token").value = "";  // the page never keeps the token
  if (res.status !== 201) { $("login-error").textContent = res.status === 401 ? t("badlogin") : reasonOf(res); return; }
  const me = await api("GET", "/v1/console/me");
  if (me.status === 200) start(me.data);
});

$("logout").addEventListener("click", async () => {
  await api("DELETE", "/v1/console/session");
  location.reload();
});

$("lang").addEventListener("click", () => {
  S.lang = S.lang === "zh" ? "en" : "zh";
  localStorage.setItem("hb-lang", S.lang);  // a preference only; never a credential
  applyLanguage();
});

async function start(me) {
  S.agent = me.agent_id;
  S.site = me.site;
  $("site").textContent = me.site;
  document.title = `${S.site} ${t("title")}`;
  $("login").hidden = true;
  $("desk").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = me.agent_id;
  const select = $("target");
  const label = (x) => (S.lang === "zh" ? x.label_zh : x.label_en) || x.label;
  select.replaceChildren(...me.targets.map((x) => new Option(`${x.id} · ${label(x)}`, x.id)));
  if (me.targets.some((x) => x.id === "110")) select.value = "110";
  const cat = await api("GET", "/v1/catalog");
  if (cat.status === 200) { S.categories = cat.data.categories; fillCategories(); }
  // The stream first, then the state: a call answered in between is in one or the other.
  await openStream();
  const calls = await api("GET", "/v1/calls");
  if (!S.call && calls.status === 200 && calls.data.calls.length) {
    const c = calls.data.calls[calls.data.calls.length - 1];
    setCall({ call_id: c.call_id, citizen_number: c.citizen_number, since: c.since * 1000 });
  }
  loadOrders();
  setInterval(loadOrders, 30000);
  $("key-carry").focus();
}

// -- the live call ----------------------------------------------------------------------------

function setCall(call) {
  S.call = call;
  if (call && !call.since) call.since = Date.now();
  clearInterval(S.timer);
  if (call) S.timer = setInterval(renderDuration, 1000);
  renderCall();
}

function renderCall() {
  const c = S.call;
  $("call-none").hidden = !!c;
  $("call-info").hidden = !c;
  if (!c) return;
  $("call-number").textContent = c.citizen_number || "";
  $("call-jurisdiction").textContent = c.jurisdiction || t("unknown");
  $("call-nuisance").textContent = c.nuisance === true ? t("yes") : c.nuisance === false ? t("no") : t("unknown");
  renderDuration();
}

function renderDuration() {
  if (!S.call) return;
  const s = Math.max(0, Math.floor((Date.now() - S.call.since) / 1000));
  $("call-duration").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// -- the handoff form and the advisor ---------------------------------------------------------

function fillCategories() {
  const sel = $("f-category");
  const keep = sel.value;
  sel.replaceChildren(new Option("", ""), ...S.categories.map((c) =>
    new Option(`${S.lang === "zh" ? c.label_zh : c.label_en} (${c.code})`, c.code)));
  sel.value = keep;
}

function handoffInput() {
  const out = { danger_to_life: $("f-danger").checked, violent_risk: $("f-violent").checked };
  if ($("f-category").value) out.category = $("f-category").value;
  for (const f of ["time", "place", "people", "event", "request"]) {
    const v = $(`f-${f}`).value.trim();
    if (v) out[f] = v;
  }
  if (S.call && S.call.jurisdiction && S.call.jurisdiction !== "unknown") out.jurisdiction = S.call.jurisdiction;
  return out;
}

async function advise() {
  const body = { danger_to_life: $("f-danger").checked, violent_risk: $("f-violent").checked };
  if ($("f-category").value) body.category = $("f-category").value;
  const res = await api("POST", "/v1/route", body);
  const el = $("advice");
  if (res.status !== 200) { el.textContent = reasonOf(res); return; }
  el.textContent = S.lang === "zh" ? res.data.reason_zh : res.data.reason_en;
  el.className = res.data.police_dispatch_first ? "police" : "";
}

for (const id of ["f-category", "f-danger", "f-violent"]) $(id).addEventListener("change", advise);

// -- hotkeys ----------------------------------------------------------------------------------

async function press(kind) {
  const progress = $("progress");
  if (kind === "carry" || kind === "three") {
    const path = `/v1/agents/${encodeURIComponent(S.agent)}/${kind === "carry" ? "carry-transfer" : "three-way"}`;
    const res = await api("POST", path, { target: $("target").value, handoff: handoffInput() });
    if (res.status !== 202) { progress.textContent = reasonOf(res); return; }
    // The stream may already have told a later state of this handoff (a fast PBX answers
    // before this reply is read): never step back to "requested".
    if (!S.handoff || S.handoff.id !== res.data.handoff_id) {
      S.handoff = { kind: kind === "carry" ? "transfer" : "three_way", id: res.data.handoff_id,
        target: $("target").value, state: res.data.state };
    }
    if (kind === "three") S.conference = res.data.conference_id;
    renderHandoff();
    return;
  }
  if (!S.conference) { progress.textContent = t("nohandoff"); return; }
  const res = await api("POST", `/v1/conferences/${encodeURIComponent(S.conference)}/${kind}`, {});
  if (res.status !== 202) progress.textContent = reasonOf(res);
}

function renderHandoff() {
  const h = S.handoff;
  $("f-append").disabled = !h;
  if (!h) return;
  const word = h.kind === "transfer" ? t("transfer_word") : t("three_word");
  $("progress").textContent = `${word} → ${h.target}${t("by")}${t("st_" + h.state)}`;
  $("progress").dataset.state = h.state;
}

// A handoff started by a key on the phone (or before the form was filled) is completed here: the
// snapshot sent at transfer time stays frozen; what the agent adds is an event of the record.
$("f-append").addEventListener("click", async () => {
  if (!S.handoff) return;
  const f = handoffInput();
  const parts = [];
  if (f.category) parts.push(`${t("category")}: ${f.category}`);
  for (const k of ["time", "place", "people", "event", "request"]) if (f[k]) parts.push(`${t(k)}: ${f[k]}`);
  if (f.danger_to_life) parts.push(t("danger"));
  if (f.violent_risk) parts.push(t("violent"));
  if (!parts.length) return;
  const res = await api("POST", `/v1/handoffs/${encodeURIComponent(S.handoff.id)}/events`,
    { kind: "note", text: parts.join("; ").slice(0, 2000) });
  $("append-status").textContent = res.status === 201 ? t("appended") : reasonOf(res);
});

$("key-carry").addEventListener("click", () => press("carry"));
$("key-three").addEventListener("click", () => press("three"));
$("key-leave").addEventListener("click", () => press("leave"));
$("key-cancel").addEventListener("click", () => press("cancel"));

const SHORTCUTS = { F2: () => press("carry"), F3: () => press("three"), F4: () => press("leave"),
  F8: () => press("cancel"), F9: () => acknowledge() };
document.addEventListener("keydown", (ev) => {
  const run = SHORTCUTS[ev.key];
  if (run && S.agent) { ev.preventDefault(); run(); }
});

// -- the screen pop ---------------------------------------------------------------------------

function showPop(data) {
  const rec = data.record;
  const snap = rec.snapshot;
  S.pop = rec.id;
  $("pop").hidden = false;
  $("pop-id").textContent = rec.id;
  const urgent = data.urgency === "urgent";
  $("pop-urgency").textContent = urgent ? t("urgent") : t("normal");
  $("pop-urgency").className = urgent ? "urgent" : "";
  $("pop-category").textContent = snap.matter.category_label_zh || snap.matter.category || "";
  $("pop-place").textContent = snap.content.place || "";
  $("pop-event").textContent = snap.content.event || "";
  $("pop-request").textContent = snap.content.request || "";
  $("pop-status").textContent = "";
  $("pop-ack").focus();
}

async function acknowledge() {
  if (!S.pop) return;
  const res = await api("POST", `/v1/handoffs/${encodeURIComponent(S.pop)}/events`, { kind: "acknowledged" });
  $("pop-status").textContent = res.status === 201 ? t("acked") : reasonOf(res);
}

$("pop-ack").addEventListener("click", acknowledge);
$("pop-return").addEventListener("click", async () => {
  const reason = $("pop-reason").value.trim();
  if (!reason) { $("pop-status").textContent = t("needreason"); $("pop-reason").focus(); return; }
  const res = await api("POST", `/v1/handoffs/${encodeURIComponent(S.pop)}/events`, { kind: "returned", reason });
  $("pop-status").textContent = res.status === 201 ? t("returned_ok") : reasonOf(res);
});

// -- work orders ------------------------------------------------------------------------------

async function loadOrders() {
  const res = await api("GET", "/v1/work-queue");
  if (res.status !== 200) return;
  const rows = res.data.items.map((m) => {
    const tr = document.createElement("tr");
    if (m.overdue && m.overdue.length) tr.className = "overdue";
    for (const v of [m.id, m.category_label_zh || m.category || "", t("wo_" + m.status),
      (m.overdue && m.overdue.length ? t("overdue") + " " : "") + (m.sign_by || m.complete_by || "")]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  });
  $("orders-body").replaceChildren(...rows);
}

// -- the live event stream (Server-Sent Events with a short-lived ticket) ---------------------

function setLink(state) {
  $("link").dataset.state = state;
  $("link").textContent = t(state === "open" ? "link_open" : "link_closed");
}

async function openStream() {
  const res = await api("POST", `/v1/agents/${encodeURIComponent(S.agent)}/events/ticket`, {});
  if (res.status !== 201) { setLink("closed"); setTimeout(openStream, 3000); return; }
  let url = res.data.url;
  if (S.lastId) url += `&last_event_id=${encodeURIComponent(S.lastId)}`;
  const es = new EventSource(url);
  S.stream = es;
  const on = (name, fn) => es.addEventListener(name, (ev) => {
    if (ev.lastEventId) S.lastId = ev.lastEventId;
    fn(JSON.parse(ev.data));
  });
  on("call_offered", (d) => { if (!S.call) { $("call-none").textContent = `${t("ringing")} ${d.citizen_number}`; } });
  on("call_answered", (d) => setCall({ call_id: d.call_id, citizen_number: d.citizen_number,
    jurisdiction: d.jurisdiction, nuisance: d.nuisance }));
  on("call_ended", (d) => { if (S.call && S.call.call_id === d.call_id) { setCall(null); $("call-none").textContent = t("nocall"); } });
  on("call_missed", () => { if (!S.call) $("call-none").textContent = t("nocall"); });
  on("screen_pop", showPop);
  const moved = (kind) => (d) => {
    S.handoff = { kind, id: d.handoff_id, target: d.target, state: d.state };
    if (kind === "three_way") S.conference = d.conference_id;
    renderHandoff();
  };
  on("transfer", moved("transfer"));
  on("three_way", moved("three_way"));
  on("partner_event", (d) => {
    $("partner-news").textContent = `${d.handoff_id}${t("by")}${t("pe_" + d.event)}`;
    $("partner-news").dataset.event = d.event || "";
    loadOrders();
  });
  on("reset", () => { S.lastId = null; });
  const opened = new Promise((resolve) => {
    es.onopen = () => { setLink("open"); resolve(); };
    es.onerror = () => {
      // The ticket was for one connection: a reconnect needs a fresh one (and says where it was).
      es.close();
      setLink("closed");
      resolve();
      setTimeout(openStream, 1000);
    };
  });
  return opened;
}

boot();
