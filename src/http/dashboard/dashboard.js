// The Tasklane dashboard: plain browser JavaScript over the public GraphQL API.
// Uploads go through createTask (GraphQL multipart, run: true); every change of the key's
// tasks arrives through the tasksUpdated subscription over SSE (EventSource, ?token=),
// so the table updates live without polling or reloading. Rows are keyed by task id and
// only ever replaced by a newer `version`, so the initial list and the stream can overlap.

const TASK_FIELDS = `id status progress version error createdAt startedAt finishedAt
  resize { width height fit format }
  source { width height format }
  result { url width height format byteSize }`;

const $ = (selector) => document.querySelector(selector);
const tasks = new Map(); // id → task (newest version seen)
const rows = new Map(); // id → <tr>
let key = '';
let events = null;
/** Delay before the next attempt after the server refused the stream (doubles, capped). */
let retryDelayMs = 1000;
let retryTimer = null;

function setConnection(state, text) {
  const badge = $('#connection');
  badge.dataset.state = state;
  badge.textContent = text;
}

async function graphql(query, variables = {}) {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors?.length) throw new Error(body.errors[0].message);
  return body.data;
}

function formatDuration(task) {
  if (!task.startedAt) return '';
  const end = task.finishedAt ? new Date(task.finishedAt) : new Date();
  const ms = Math.max(0, end - new Date(task.startedAt));
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function cell(className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  return td;
}

function createRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.taskId = id;
  const idCell = cell('id');
  idCell.textContent = id.slice(0, 8);
  idCell.title = id;
  const status = document.createElement('span');
  status.className = 'status';
  const statusCell = cell('status-cell');
  statusCell.append(status);
  const bar = document.createElement('div');
  bar.className = 'bar';
  bar.append(document.createElement('div'));
  const percent = document.createElement('span');
  percent.className = 'percent';
  const progressCell = cell('progress');
  progressCell.append(bar, percent);
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.textContent = 'Delete';
  remove.addEventListener('click', () => deleteTask(id));
  const actions = cell('actions');
  actions.append(remove);
  tr.append(idCell, statusCell, progressCell, cell('duration'), cell('result'), cell('error'), actions);
  return tr;
}

function render(task) {
  let tr = rows.get(task.id);
  if (!tr) {
    tr = createRow(task.id);
    rows.set(task.id, tr);
    // Newest first, by creation time (ISO strings compare in time order).
    const body = $('#tasks tbody');
    const after = [...body.children].find((other) => (tasks.get(other.dataset.taskId)?.createdAt ?? '') < task.createdAt);
    body.insertBefore(tr, after ?? null);
  }
  tr.dataset.status = task.status;
  tr.classList.toggle('deleted', task.status === 'DELETED');
  const status = tr.querySelector('.status');
  status.dataset.status = task.status;
  status.textContent = task.status;
  const percent = Math.round(task.progress * 100);
  tr.querySelector('.bar > div').style.width = `${percent}%`;
  tr.querySelector('.percent').textContent = `${percent}%`;
  tr.querySelector('td.duration').textContent = formatDuration(task);
  const result = tr.querySelector('td.result');
  const shown = result.querySelector('a')?.dataset.url;
  if (task.result?.url && shown !== task.result.url) {
    const link = document.createElement('a');
    link.href = task.result.url;
    link.target = '_blank';
    link.rel = 'noopener';
    link.dataset.url = task.result.url;
    link.title = `${task.result.width}×${task.result.height} ${task.result.format}, ${task.result.byteSize} bytes`;
    const img = document.createElement('img');
    img.src = task.result.url;
    img.alt = `result of ${task.id}`;
    link.append(img);
    result.replaceChildren(link);
  } else if (!task.result) {
    result.replaceChildren();
  }
  tr.querySelector('td.error').textContent = task.error ?? '';
  tr.querySelector('button.delete').disabled = task.status === 'DELETED';
  $('#tasks').hidden = rows.size === 0;
  $('#empty').hidden = rows.size > 0;
}

/** Keeps the newest version of each task and redraws its row. */
function update(task) {
  const known = tasks.get(task.id);
  if (known && known.version >= task.version) return;
  tasks.set(task.id, task);
  render(task);
}

async function loadRecent() {
  const data = await graphql(`query Recent { tasks(first: 50) { edges { node { ${TASK_FIELDS} } } } }`);
  // Oldest first, so each newer one is inserted above.
  for (const { node } of data.tasks.edges.reverse()) update(node);
  $('#empty').hidden = rows.size > 0;
}

function subscribe() {
  events?.close();
  const query = `subscription Dashboard { tasksUpdated { ${TASK_FIELDS} } }`;
  // EventSource cannot send headers: the key goes as ?token=.
  events = new EventSource(`/graphql?query=${encodeURIComponent(query)}&token=${encodeURIComponent(key)}`);
  events.addEventListener('open', () => {
    retryDelayMs = 1000;
    setConnection('live', 'live');
    // (Re)connected: changes made while we were away are fetched once.
    loadRecent().catch((error) => setConnection('error', error.message));
  });
  events.addEventListener('next', (event) => {
    const message = JSON.parse(event.data);
    if (message.errors?.length) {
      setConnection('error', message.errors[0].message);
      events.close();
      return;
    }
    update(message.data.tasksUpdated);
  });
  events.addEventListener('error', () => {
    if (events.readyState !== EventSource.CLOSED) {
      setConnection('disconnected', 'reconnecting…'); // the browser retries by itself
      return;
    }
    // An HTTP error answer (a 503 while the API starts or the database is away, a 502 from a
    // proxy) ends an EventSource for good: try again ourselves, backing off.
    setConnection('disconnected', `reconnecting in ${Math.round(retryDelayMs / 1000)} s…`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(subscribe, retryDelayMs);
    retryDelayMs = Math.min(retryDelayMs * 2, 15_000);
  });
}

async function connect(event) {
  event.preventDefault();
  key = $('#key').value.trim();
  if (!key) return;
  setConnection('disconnected', 'connecting…');
  try {
    await graphql('{ tasks(first: 1) { edges { cursor } } }'); // checks the key before streaming
  } catch (error) {
    setConnection('error', error.message);
    return;
  }
  sessionStorage.setItem('tasklane.key', key);
  $('#upload').hidden = false;
  subscribe();
}

function intOrNull(selector) {
  const value = $(selector).value.trim();
  return value === '' ? null : Number(value);
}

async function upload(event) {
  event.preventDefault();
  const message = $('#upload-message');
  message.className = 'message';
  const file = $('#file').files[0];
  if (!file) return;
  const resize = {
    width: intOrNull('#width'),
    height: intOrNull('#height'),
    fit: $('#fit').value,
    format: $('#format').value || null,
    quality: intOrNull('#quality'),
    withoutEnlargement: $('#withoutEnlargement').checked,
  };
  const operations = {
    query: `mutation Upload($image: File!, $resize: ResizeInput!) {
      createTask(input: { jobDefinition: IMAGE_RESIZE, image: $image, resize: $resize, run: true }) {
        __typename
        ... on Task { ${TASK_FIELDS} }
        ... on Error { message }
      }
    }`,
    variables: { image: null, resize },
  };
  // GraphQL multipart request: operations, map, then the file.
  const form = new FormData();
  form.append('operations', JSON.stringify(operations));
  form.append('map', JSON.stringify({ 0: ['variables.image'] }));
  form.append('0', file, file.name);
  message.textContent = 'uploading…';
  try {
    const response = await fetch('/graphql', { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    const body = await response.json();
    if (body.errors?.length) throw new Error(body.errors[0].message);
    const result = body.data.createTask;
    if (result.__typename !== 'Task') throw new Error(`${result.__typename}: ${result.message}`);
    update(result);
    message.textContent = `task ${result.id.slice(0, 8)} queued`;
  } catch (error) {
    message.className = 'message error';
    message.textContent = error.message;
  }
}

async function deleteTask(id) {
  try {
    const data = await graphql(
      `mutation Delete($id: ID!) { deleteTask(id: $id) { __typename ... on Task { ${TASK_FIELDS} } ... on Error { message } } }`,
      { id },
    );
    if (data.deleteTask.__typename === 'Task') update(data.deleteTask);
  } catch (error) {
    $('#upload-message').className = 'message error';
    $('#upload-message').textContent = error.message;
  }
}

// Running tasks' durations grow every second without any request.
setInterval(() => {
  for (const task of tasks.values()) {
    if (task.status === 'RUNNING') rows.get(task.id).querySelector('td.duration').textContent = formatDuration(task);
  }
}, 1000);

$('#connect').addEventListener('submit', connect);
$('#upload').addEventListener('submit', upload);
const saved = sessionStorage.getItem('tasklane.key');
if (saved) {
  $('#key').value = saved;
  $('#connect').requestSubmit();
}
