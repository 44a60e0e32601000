// Manage API Access: the taxpayer's page. It speaks only the public taxpayer API (/v1/taxpayer/*)
// and keeps the login token in memory, so closing or reloading the tab logs out.
'use strict';

(() => {
  /** How often the inbox, sessions and status are fetched again while the page is visible. */
  const POLL_MS = 5000;
  /** How often "time left" is recomputed between fetches. */
  const TICK_MS = 15000;
  /** Warn about the password this many days before it expires. */
  const PASSWORD_WARN_DAYS = 14;
  /** Problem codes that mean the login token is no longer good: back to the login form. */
  const LOGIN_ENDED = new Set(['token_expired', 'token_invalid', 'token_missing']);
  /** Activity events fetched at a time. */
  const ACTIVITY_PAGE = 20;

  const byId = (id) => {
    const found = document.getElementById(id);
    if (!found) throw new Error(`page element #${id} is missing`);
    return found;
  };

  const ui = {
    whoami: byId('whoami'),
    gstin: byId('taxpayer-gstin'),
    logout: byId('logout'),

    loginSection: byId('login-section'),
    loginForm: byId('login-form'),
    loginUsername: byId('login-username'),
    loginPassword: byId('login-password'),
    loginSubmit: byId('login-submit'),
    loginMessage: byId('login-message'),
    loginError: byId('login-error'),
    showPasswordForm: byId('show-password-form'),

    passwordSection: byId('password-section'),
    passwordForm: byId('password-form'),
    passwordReason: byId('password-reason'),
    passwordError: byId('password-error'),
    pwUsername: byId('pw-username'),
    pwCurrent: byId('pw-current'),
    pwNew: byId('pw-new'),
    pwConfirm: byId('pw-confirm'),
    pwSubmit: byId('pw-submit'),
    pwCancel: byId('pw-cancel'),

    appSection: byId('app-section'),
    appHeading: byId('app-heading'),
    appMessage: byId('app-message'),
    passwordWarning: byId('password-warning'),

    accessStatus: byId('access-status'),
    accessExpires: byId('access-expires'),
    accessRemaining: byId('access-remaining'),
    accessForm: byId('access-form'),
    enableYes: byId('enable-yes'),
    enableNo: byId('enable-no'),
    duration: byId('duration'),
    durationField: byId('duration-field'),
    disableHint: byId('disable-hint'),
    accessError: byId('access-error'),
    confirm: byId('confirm'),

    otpRefresh: byId('otp-refresh'),
    otpError: byId('otp-error'),
    otpEmpty: byId('otp-empty'),
    otpList: byId('otp-list'),

    sessionsRefresh: byId('sessions-refresh'),
    sessionsError: byId('sessions-error'),
    sessionsEmpty: byId('sessions-empty'),
    sessionsTable: byId('sessions-table'),
    sessionsList: byId('sessions-list'),

    activityRefresh: byId('activity-refresh'),
    activityError: byId('activity-error'),
    activityEmpty: byId('activity-empty'),
    activityList: byId('activity-list'),
    activityMore: byId('activity-more'),
  };

  const state = {
    token: null,
    tokenTimer: 0,
    pollTimer: 0,
    tickTimer: 0,
    polling: false,
    access: null,
    // Lists are redrawn only when their data changed, so polling never steals keyboard focus.
    otpSnapshot: '',
    sessionsSnapshot: '',
    activitySnapshot: '',
    activityBefore: null,
    activityPaged: false,
    knownOtps: new Set(),
    gspNames: new Map(),
  };

  /** A problem+json answer (or a network failure, status 0) from the gateway. */
  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `The gateway answered with status ${status}.`);
      this.status = status;
      this.code = problem.code || '';
      this.reason = problem.reason || '';
      this.loginEnded = false;
    }
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  async function call(method, path, body, { auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token = state.token;
    if (auth) {
      if (!state.token) {
        const err = new ApiError(401, { code: 'token_missing', detail: 'Please log in.' });
        err.loginEnded = true;
        throw err;
      }
      headers.Authorization = `Bearer ${token}`;
    }
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, { detail: 'The gateway could not be reached. Check your connection and try again.' });
    }
    // An answer that arrives after a logout (or a new login) must not paint the page.
    if (auth && state.token !== token) {
      const err = new ApiError(401, { code: 'token_missing', detail: 'Please log in.' });
      err.loginEnded = true;
      throw err;
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const problem = data && typeof data === 'object' ? data : {};
      const err = new ApiError(response.status, problem);
      if (auth && response.status === 401 && LOGIN_ENDED.has(err.code)) {
        err.loginEnded = true;
        endLogin(err.code === 'token_expired'
          ? 'Your login has expired. Please log in again.'
          : 'Your login is no longer valid. Please log in again.');
      }
      throw err;
    }
    return data;
  }

  // ---- Small helpers ---------------------------------------------------------------------------

  /** Builds an element; children are nodes or text (never parsed as HTML). */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'className') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    timeZoneName: 'short',
  });

  function formatTime(iso) {
    const when = new Date(iso);
    return Number.isNaN(when.getTime()) ? String(iso) : dateFormat.format(when);
  }

  /** A <time> element that shows local time and carries the API's exact value. */
  function timeEl(iso, attrs) {
    if (!iso) return h('span', attrs, '—');
    return h('time', { datetime: iso, title: iso, ...attrs }, formatTime(iso));
  }

  /** "2 days 3 hours", "5 hours 10 minutes", "4 minutes": enough precision to plan by. */
  function formatLeft(ms) {
    const minutes = Math.floor(ms / 60000);
    if (minutes < 1) return 'less than a minute';
    const days = Math.floor(minutes / 1440);
    const hours = Math.floor((minutes % 1440) / 60);
    const mins = minutes % 60;
    const part = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
    if (days > 0) return hours > 0 ? `${part(days, 'day')} ${part(hours, 'hour')}` : part(days, 'day');
    if (hours > 0) return mins > 0 ? `${part(hours, 'hour')} ${part(mins, 'minute')}` : part(hours, 'hour');
    return part(mins, 'minute');
  }

  function durationLabel(hours) {
    const option = Array.from(ui.duration.options).find((o) => Number(o.value) === hours);
    if (option) return option.textContent.trim().toLowerCase();
    return hours % 24 === 0 ? `${hours / 24} days` : `${hours} hours`;
  }

  function say(node, text) {
    node.textContent = text || '';
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    if (busy) button.setAttribute('aria-busy', 'true');
    else button.removeAttribute('aria-busy');
  }

  /**
   * Shows an error in `node` unless the error already sent the user back to the login form.
   * `source` is 'fetch' for a failed refresh, which the next good refresh clears; an action's
   * error (a refused Confirm or Revoke) stays until the taxpayer acts again.
   */
  function showError(node, err, source = 'action') {
    if (err && err.loginEnded) return;
    node.dataset.source = source;
    say(node, err instanceof Error ? err.message : String(err));
  }

  function clearFetchError(node) {
    if (node.dataset.source === 'fetch') say(node, '');
  }

  function humanAction(action) {
    const text = String(action || '').replace(/[._]+/g, ' ').trim()
      .replace(/\b(otp|evc|gsp)\b/g, (word) => word.toUpperCase());
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : 'Event';
  }

  /**
   * The event's detail as short text. Ids and names already shown elsewhere are left out, times
   * are shown as local times, and lists by their length.
   */
  function describeDetail(detail) {
    if (detail === null || detail === undefined || detail === '') return '';
    if (typeof detail !== 'object') return String(detail);
    return Object.entries(detail)
      .filter(([k, v]) => v !== null && v !== undefined && v !== '' && k !== 'gsp_name' && !k.endsWith('_id'))
      .map(([k, v]) => {
        const label = k.replace(/_/g, ' ');
        if (Array.isArray(v)) return `${label}: ${v.length}`;
        if (typeof v === 'object') return `${label}: ${JSON.stringify(v)}`;
        if (k.endsWith('_at')) return `${label}: ${formatTime(v)}`;
        return `${label}: ${v}`;
      })
      .join(' · ');
  }

  /** A GSP's name for its client id, learnt from the inbox, the sessions and the events themselves. */
  function gspName(clientId, detail) {
    if (detail && typeof detail === 'object' && detail.gsp_name) return detail.gsp_name;
    return state.gspNames.get(clientId) || clientId;
  }

  /** "gsp:<client id>" reads better as the GSP's name, "taxpayer:<username>" as "you". */
  function describeActor(event) {
    const [kind, who] = String(event.actor).split(/:(.*)/s);
    // A failed login was not necessarily the taxpayer: say only what is known.
    if (kind === 'taxpayer') return /fail/.test(String(event.action)) ? 'someone with your username' : 'you';
    if (kind === 'gsp') return `GSP ${gspName(who || event.gsp_client_id, event.detail)}`;
    if (kind === 'operator') return 'the operator';
    return event.actor;
  }

  // ---- Views -----------------------------------------------------------------------------------

  function showView(name) {
    ui.loginSection.hidden = name !== 'login';
    ui.passwordSection.hidden = name !== 'password';
    ui.appSection.hidden = name !== 'app';
    ui.whoami.hidden = name !== 'app';
  }

  function showLogin(message) {
    showView('login');
    say(ui.loginError, '');
    say(ui.loginMessage, message);
    ui.loginUsername.focus();
  }

  function showPasswordForm(username, reason) {
    showView('password');
    say(ui.passwordError, '');
    say(ui.passwordReason, reason);
    ui.passwordForm.reset();
    ui.pwUsername.value = username || ui.loginUsername.value;
    (ui.pwUsername.value ? ui.pwCurrent : ui.pwUsername).focus();
  }

  // ---- Login -----------------------------------------------------------------------------------

  async function onLogin(event) {
    event.preventDefault();
    say(ui.loginError, '');
    say(ui.loginMessage, '');
    const username = ui.loginUsername.value.trim();
    const password = ui.loginPassword.value;
    setBusy(ui.loginSubmit, true);
    try {
      const login = await call('POST', '/v1/taxpayer/login', { username, password }, { auth: false });
      ui.loginPassword.value = '';
      startLogin(login);
    } catch (err) {
      ui.loginPassword.value = '';
      if (err.code === 'password_expired') {
        showPasswordForm(username, `${err.message} Choose a new password to continue.`);
      } else {
        showError(ui.loginError, err);
        ui.loginPassword.focus();
      }
    } finally {
      setBusy(ui.loginSubmit, false);
    }
  }

  function startLogin(login) {
    state.token = login.access_token;
    clearTimeout(state.tokenTimer);
    const lifetimeMs = Number(login.expires_in) * 1000;
    if (lifetimeMs > 0) {
      state.tokenTimer = setTimeout(
        () => endLogin('Your login has expired. Please log in again.'),
        lifetimeMs,
      );
    }
    showPasswordWarning(login.password_expires_at);
    resetData();
    showView('app');
    ui.appHeading.setAttribute('tabindex', '-1');
    ui.appHeading.focus();
    refreshAccess({ syncForm: true });
    refreshAll();
    startPolling();
  }

  function showPasswordWarning(expiresAt) {
    const when = expiresAt ? new Date(expiresAt) : null;
    const daysLeft = when ? (when.getTime() - Date.now()) / 86400000 : Infinity;
    if (when && daysLeft <= PASSWORD_WARN_DAYS) {
      ui.passwordWarning.textContent = `Your password expires on ${formatTime(expiresAt)}. Change it before then to keep logging in.`;
      ui.passwordWarning.hidden = false;
    } else {
      ui.passwordWarning.textContent = '';
      ui.passwordWarning.hidden = true;
    }
  }

  /** Forgets the token and everything shown with it: OTP codes must not stay on screen. */
  function endLogin(message) {
    state.token = null;
    clearTimeout(state.tokenTimer);
    stopPolling();
    resetData();
    showLogin(message);
  }

  function resetData() {
    state.access = null;
    state.otpSnapshot = '';
    state.sessionsSnapshot = '';
    state.activitySnapshot = '';
    state.activityBefore = null;
    state.activityPaged = false;
    state.knownOtps = new Set();
    state.gspNames = new Map();
    ui.gstin.textContent = '';
    ui.otpList.replaceChildren();
    ui.sessionsList.replaceChildren();
    ui.activityList.replaceChildren();
    ui.activityMore.hidden = true;
    for (const node of [ui.appMessage, ui.accessError, ui.otpError, ui.sessionsError, ui.activityError]) say(node, '');
    renderAccess(null);
  }

  // ---- Password --------------------------------------------------------------------------------

  async function onPasswordChange(event) {
    event.preventDefault();
    say(ui.passwordError, '');
    if (ui.pwNew.value !== ui.pwConfirm.value) {
      say(ui.passwordError, 'The two new passwords are not the same.');
      ui.pwConfirm.focus();
      return;
    }
    const username = ui.pwUsername.value.trim();
    setBusy(ui.pwSubmit, true);
    try {
      await call('POST', '/v1/taxpayer/password', {
        username,
        current_password: ui.pwCurrent.value,
        new_password: ui.pwNew.value,
      }, { auth: false });
      ui.passwordForm.reset();
      ui.loginUsername.value = username;
      showLogin('Your password has been changed. Log in with the new password.');
      ui.loginPassword.focus();
    } catch (err) {
      showError(ui.passwordError, err);
      (err.reason === 'weak_password' || err.reason === 'password_unchanged' ? ui.pwNew : ui.pwCurrent).focus();
    } finally {
      setBusy(ui.pwSubmit, false);
    }
  }

  // ---- API access ------------------------------------------------------------------------------

  function renderAccess(access) {
    state.access = access;
    if (!access) {
      ui.accessStatus.textContent = '…';
      delete ui.accessStatus.dataset.status;
      ui.accessExpires.replaceChildren('—');
      delete ui.accessExpires.dataset.expiresAt;
      ui.accessRemaining.textContent = '—';
      return;
    }
    ui.gstin.textContent = access.gstin || '';
    ui.accessStatus.textContent = access.status;
    ui.accessStatus.dataset.status = access.status;
    if (access.expires_at) {
      ui.accessExpires.replaceChildren(timeEl(access.expires_at));
      ui.accessExpires.dataset.expiresAt = access.expires_at;
    } else {
      ui.accessExpires.replaceChildren('—');
      delete ui.accessExpires.dataset.expiresAt;
    }
    renderRemaining();
  }

  function renderRemaining() {
    const access = state.access;
    if (!access || !access.expires_at) {
      ui.accessRemaining.textContent = '—';
      return;
    }
    const left = new Date(access.expires_at).getTime() - Date.now();
    // Until the next poll asks the gateway (which decides what "expired" is), say it has ended.
    if (access.status !== 'enabled' || left <= 0) {
      ui.accessRemaining.textContent = 'none (ended)';
      return;
    }
    ui.accessRemaining.textContent = `${formatLeft(left)} left`;
  }

  /** Sets the form to what the gateway says, so Confirm without changes keeps things as they are. */
  function syncAccessForm(access) {
    const on = access.status === 'enabled';
    ui.enableYes.checked = on;
    ui.enableNo.checked = !on;
    if (access.duration_hours) {
      const value = String(access.duration_hours);
      if (!Array.from(ui.duration.options).some((o) => o.value === value)) {
        ui.duration.append(h('option', { value }, `${durationLabel(access.duration_hours)}`));
      }
      ui.duration.value = value;
    }
    syncDurationField();
  }

  function syncDurationField() {
    const on = ui.enableYes.checked;
    ui.duration.disabled = !on;
    ui.disableHint.hidden = on;
  }

  async function refreshAccess({ syncForm }) {
    try {
      const previous = state.access;
      const access = await call('GET', '/v1/taxpayer/api-access');
      clearFetchError(ui.accessError);
      renderAccess(access);
      // A change made elsewhere (the window ran out, another tab) resets the form; otherwise a
      // poll leaves the taxpayer's unconfirmed choice alone.
      if (syncForm || !previous || previous.status !== access.status) syncAccessForm(access);
    } catch (err) {
      showError(ui.accessError, err, 'fetch');
    }
  }

  async function onConfirm(event) {
    event.preventDefault();
    say(ui.accessError, '');
    say(ui.appMessage, '');
    const enable = ui.enableYes.checked;
    const hours = Number(ui.duration.value);
    const body = enable ? { enabled: true, duration_hours: hours } : { enabled: false };
    setBusy(ui.confirm, true);
    try {
      const access = await call('PUT', '/v1/taxpayer/api-access', body);
      renderAccess(access);
      syncAccessForm(access);
      say(ui.appMessage, enable
        ? `API access is enabled for ${durationLabel(hours)}, until ${formatTime(access.expires_at)}.`
        : 'API access is disabled. Every GSP session has been signed out.');
      refreshAll();
    } catch (err) {
      showError(ui.accessError, err);
    } finally {
      setBusy(ui.confirm, false);
    }
  }

  // ---- OTP inbox -------------------------------------------------------------------------------

  async function refreshOtps() {
    try {
      const otps = await call('GET', '/v1/taxpayer/otp-requests');
      clearFetchError(ui.otpError);
      renderOtps(Array.isArray(otps) ? otps : []);
    } catch (err) {
      showError(ui.otpError, err, 'fetch');
    }
  }

  function renderOtps(otps) {
    const snapshot = JSON.stringify(otps);
    if (snapshot === state.otpSnapshot) return;
    state.otpSnapshot = snapshot;
    const fresh = otps.filter((o) => !state.knownOtps.has(o.id));
    state.knownOtps = new Set(otps.map((o) => o.id));
    ui.otpEmpty.hidden = otps.length > 0;
    ui.otpList.replaceChildren(...otps.map((otp) => h('li',
      { className: 'otp-item', 'data-testid': 'otp-item', dataset: { otpId: otp.id } },
      otp.purpose === 'evc'
        ? h('p', {}, h('strong', { 'data-testid': 'otp-gsp' }, otp.gsp_name), ' asks you to sign its filing of ',
          h('strong', { 'data-testid': 'otp-form' }, otp.form_type), ` by EVC (PAN ${otp.pan}). Give this code only if you want that return filed.`)
        : h('p', {}, h('strong', { 'data-testid': 'otp-gsp' }, otp.gsp_name), ' asks to act for you.'),
      h('p', { className: 'otp-code', 'data-testid': 'otp-code', 'aria-label': `One-time password ${String(otp.code).split('').join(' ')}` }, otp.code),
      h('p', { className: 'hint' }, 'Asked ', timeEl(otp.created_at), '; valid until ', timeEl(otp.expires_at, { 'data-testid': 'otp-expires' }), '.'),
    )));
    if (fresh.length > 0) {
      const names = fresh.map((o) => o.gsp_name).join(', ');
      say(ui.appMessage, `New OTP request from ${names}.`);
    }
  }

  // ---- Sessions --------------------------------------------------------------------------------

  async function refreshSessions() {
    try {
      const sessions = await call('GET', '/v1/taxpayer/sessions');
      clearFetchError(ui.sessionsError);
      renderSessions(Array.isArray(sessions) ? sessions : []);
    } catch (err) {
      showError(ui.sessionsError, err, 'fetch');
    }
  }

  function renderSessions(sessions) {
    const snapshot = JSON.stringify(sessions);
    if (snapshot === state.sessionsSnapshot) return;
    state.sessionsSnapshot = snapshot;
    ui.sessionsEmpty.hidden = sessions.length > 0;
    ui.sessionsTable.hidden = sessions.length === 0;
    for (const s of sessions) {
      if (s.gsp && s.gsp.client_id && s.gsp.name) state.gspNames.set(s.gsp.client_id, s.gsp.name);
    }
    ui.sessionsList.replaceChildren(...sessions.map((s) => {
      const name = (s.gsp && (s.gsp.name || s.gsp.client_id)) || 'GSP';
      const action = s.status === 'active'
        ? h('button', {
          type: 'button',
          className: 'button-danger',
          'data-testid': 'revoke',
          'aria-label': `Revoke the session of ${name}`,
          dataset: { sessionId: s.session_id, gspName: name },
        }, 'Revoke')
        : '';
      return h('tr', { 'data-testid': 'session-row', dataset: { sessionId: s.session_id } },
        h('td', { 'data-label': 'GSP' }, h('span', { 'data-testid': 'session-gsp' }, name)),
        h('td', { 'data-label': 'Started' }, timeEl(s.created_at)),
        h('td', { 'data-label': 'Last used' }, s.last_used_at ? timeEl(s.last_used_at) : 'never'),
        h('td', { 'data-label': 'Ends' }, timeEl(s.expires_at)),
        h('td', { 'data-label': 'Status' }, h('span', { className: 'badge', 'data-testid': 'session-status', dataset: { status: s.status } }, s.status)),
        h('td', {}, action),
      );
    }));
  }

  async function onRevoke(event) {
    const button = event.target.closest('button[data-testid="revoke"]');
    if (!button) return;
    const { sessionId, gspName: name } = button.dataset;
    say(ui.sessionsError, '');
    setBusy(button, true);
    try {
      await call('DELETE', `/v1/taxpayer/sessions/${encodeURIComponent(sessionId)}`);
      say(ui.appMessage, `The session of ${name} has been revoked; it stops working at once.`);
    } catch (err) {
      showError(ui.sessionsError, err);
    } finally {
      setBusy(button, false);
    }
    if (!state.token) return;
    await refreshSessions();
    refreshActivity();
    // The button is gone after a revoke; keep keyboard users inside the list they were using.
    if (!document.activeElement || document.activeElement === document.body) ui.sessionsRefresh.focus();
  }

  // ---- Activity --------------------------------------------------------------------------------

  async function refreshActivity() {
    try {
      const page = await call('GET', `/v1/taxpayer/activity?limit=${ACTIVITY_PAGE}`);
      clearFetchError(ui.activityError);
      const snapshot = JSON.stringify(page);
      if (snapshot === state.activitySnapshot) return;
      state.activitySnapshot = snapshot;
      state.activityPaged = false;
      ui.activityList.replaceChildren();
      appendActivity(page);
    } catch (err) {
      showError(ui.activityError, err, 'fetch');
    }
  }

  async function onActivityMore() {
    if (!state.activityBefore) return;
    setBusy(ui.activityMore, true);
    try {
      const before = encodeURIComponent(state.activityBefore);
      const page = await call('GET', `/v1/taxpayer/activity?limit=${ACTIVITY_PAGE}&before=${before}`);
      state.activityPaged = true;
      appendActivity(page);
    } catch (err) {
      showError(ui.activityError, err);
    } finally {
      setBusy(ui.activityMore, false);
    }
  }

  function appendActivity(page) {
    const items = page && Array.isArray(page.items) ? page.items : [];
    ui.activityList.append(...items.map((e) => {
      const meta = [
        e.actor ? `by ${describeActor(e)}` : '',
        e.gsp_client_id && !String(e.actor).startsWith('gsp:') ? `GSP ${gspName(e.gsp_client_id, e.detail)}` : '',
        e.ip ? `from ${e.ip}` : '',
        describeDetail(e.detail),
      ].filter(Boolean).join(' · ');
      return h('li', { 'data-testid': 'activity-item', dataset: { action: e.action } },
        timeEl(e.at),
        h('span', { className: 'action' }, humanAction(e.action)),
        meta ? h('span', { className: 'meta' }, meta) : null,
      );
    }));
    state.activityBefore = page && page.next_before != null ? page.next_before : null;
    ui.activityMore.hidden = !state.activityBefore;
    ui.activityEmpty.hidden = ui.activityList.children.length > 0;
  }

  // ---- Polling ---------------------------------------------------------------------------------

  function refreshAll() {
    refreshOtps();
    refreshSessions();
    if (!state.activityPaged) refreshActivity();
  }

  async function poll() {
    if (!state.token || state.polling || document.hidden) return;
    state.polling = true;
    try {
      await Promise.all([
        refreshAccess({ syncForm: false }),
        refreshOtps(),
        refreshSessions(),
        state.activityPaged ? null : refreshActivity(),
      ]);
    } finally {
      state.polling = false;
    }
  }

  function startPolling() {
    stopPolling();
    state.pollTimer = setInterval(poll, POLL_MS);
    state.tickTimer = setInterval(renderRemaining, TICK_MS);
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    clearInterval(state.tickTimer);
    state.pollTimer = 0;
    state.tickTimer = 0;
  }

  // ---- Wiring ----------------------------------------------------------------------------------

  ui.loginForm.addEventListener('submit', onLogin);
  ui.showPasswordForm.addEventListener('click', () => showPasswordForm(ui.loginUsername.value.trim(), ''));
  ui.passwordForm.addEventListener('submit', onPasswordChange);
  ui.pwCancel.addEventListener('click', () => showLogin(''));
  ui.logout.addEventListener('click', () => endLogin('You have logged out.'));
  ui.accessForm.addEventListener('submit', onConfirm);
  ui.enableYes.addEventListener('change', syncDurationField);
  ui.enableNo.addEventListener('change', syncDurationField);
  ui.otpRefresh.addEventListener('click', refreshOtps);
  ui.sessionsRefresh.addEventListener('click', refreshSessions);
  ui.sessionsList.addEventListener('click', onRevoke);
  ui.activityRefresh.addEventListener('click', refreshActivity);
  ui.activityMore.addEventListener('click', onActivityMore);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) poll();
  });

  syncDurationField();
  showLogin('');
})();
