import { ApiError, currentKey, getJson, setKey } from './api.js';
import { byId } from './dom.js';
import { clearError, showError } from './errors.js';
import { TaskList } from './list.js';
import { submitTask, syncWorkspaceKind } from './submit.js';
import { TaskView } from './task-view.js';

/**
 * The page: sign-in (the key lives in sessionStorage, sent as the REST bearer header and as the
 * WebSocket subprotocol), the task list, the submit form and one task's view (#task=<id>).
 * `data-ui-ready` is set on <body> once the first state is drawn.
 */

function fail(err: unknown): void {
  showError(err);
  if (err instanceof ApiError && err.code === 'UNAUTHENTICATED') showSignedIn(false);
}

function showSignedIn(signedIn: boolean): void {
  const key = currentKey();
  byId('signin').hidden = signedIn && key !== null;
  byId('signed-in').hidden = !(signedIn && key !== null);
  byId('who').textContent = key ? `signed in (key ${key.slice(0, 8)}…)` : '';
}

const view = new TaskView(fail, () => void list.refresh());
/** Tasks per page: `?pageSize=` in the page's address (1..100), else 10. */
function pageSize(): number {
  const n = Number(new URLSearchParams(location.search).get('pageSize'));
  return Number.isInteger(n) && n >= 1 && n <= 100 ? n : 10;
}

const list = new TaskList((id) => openTask(id), fail, pageSize());

function openTask(id: string): void {
  if (location.hash !== `#task=${id}`) history.pushState(null, '', `#task=${encodeURIComponent(id)}`);
  void view.open(id);
}

function fromHash(): void {
  const m = /^#task=([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
  if (m && m[1] !== view.id) void view.open(m[1]!);
  else if (!m && view.id) view.close();
}

async function start(): Promise<void> {
  byId('error-dismiss').addEventListener('click', clearError);
  byId('signin').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>('key');
    const key = input.value.trim();
    if (!key) return;
    setKey(key);
    input.value = '';
    clearError();
    void list.refresh().then((ok) => {
      showSignedIn(ok);
      if (ok) {
        fromHash();
        byId('command').focus();
      }
    });
  });
  byId('signout').addEventListener('click', () => {
    setKey(null);
    view.close();
    list.stop();
    byId('tasks').querySelector('tbody')!.replaceChildren();
    showSignedIn(false);
    byId('key').focus();
  });
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="ws-kind"]')) radio.addEventListener('change', syncWorkspaceKind);
  syncWorkspaceKind();
  byId('submit').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const button = byId<HTMLButtonElement>('run');
    button.disabled = true;
    clearError();
    submitTask()
      .then((id) => {
        openTask(id);
        void list.refresh();
      }, fail)
      .finally(() => {
        button.disabled = false;
      });
  });
  window.addEventListener('hashchange', fromHash);

  // First state: the list (a server without keys answers without one; with keys and none signed
  // in, the 401 shows the sign-in form).
  let ok = false;
  try {
    await getJson('/v1/tasks?limit=1');
    ok = true;
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 'UNAUTHENTICATED' && !currentKey())) fail(err);
  }
  showSignedIn(ok);
  if (ok) {
    await list.refresh();
    fromHash();
  }
  document.body.dataset.uiReady = 'true';
}

void start();
