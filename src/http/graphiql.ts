// GraphiQL at /graphql in a browser (not in production), served from our own installed
// packages: @graphql-yoga/render-graphiql bundles yoga's GraphiQL (script, styles, favicon
// and the three Monaco workers, started from blob: URLs), so the page makes no request but
// to this server — it works offline, behind a proxy, under a CSP without CDNs. (yoga's
// built-in page loads all of it from unpkg.com.)
//
// The key: the Headers tab starts as `{"Authorization": "Bearer "}`; what a person puts
// there is kept in the browser tab's sessionStorage (GraphiQL's storage here is
// sessionStorage, not localStorage), so a reload keeps it and closing the tab forgets it.
// Subscriptions run over SSE (yoga's protocol, as the README's curl), sending those headers.
import type { GraphiQLOptions } from 'graphql-yoga';

export const graphiqlOptions: GraphiQLOptions = {
  title: 'Tasklane',
  headers: JSON.stringify({ Authorization: 'Bearer ' }, null, 2),
  subscriptionsProtocol: 'SSE',
  defaultQuery: `# Paste your API key (npm run key -- create me) after "Bearer " in the Headers tab
# below; this browser tab keeps it until you close it. Then pick an operation with ▶.
query RecentTasks {
  tasks(first: 10) { edges { node { id status progress error result { url width height } } } }
}

subscription Watch($id: ID!) {
  taskUpdated(id: $id) { status progress version error result { url width height } }
}

subscription Dashboard {
  tasksUpdated { id status progress version }
}
`,
};

/** JSON inside a <script>: no `</script>` or `<!--` can end it early. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

let page: Promise<string> | undefined;

/**
 * The page, made once (the bundle is ~9 MB of text; it is loaded only when GraphiQL is
 * first asked for, so production never holds it).
 */
export function renderGraphiQL(options: GraphiQLOptions): Promise<string> {
  page ??= import('@graphql-yoga/render-graphiql/graphiql').then(
    ({ css, js, favicon, editorWorkerService, jsonWorker, graphqlWorker }) => `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${options.title ?? 'GraphiQL'}</title>
    <link rel="icon" href="${favicon}" />
    <style>${css}</style>
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
    <script>
      const worker = (source) => URL.createObjectURL(new Blob([source], { type: 'application/javascript' }));
      const workers = {
        editorWorkerService: worker(${scriptJson(editorWorkerService)}),
        json: worker(${scriptJson(jsonWorker)}),
        graphql: worker(${scriptJson(graphqlWorker)}),
      };
      self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (moduleId, label) => workers[label] };
      ${js};
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector('#root'), {
        ...${scriptJson(options)},
        storage: window.sessionStorage,
        shouldPersistHeaders: true,
      });
    </script>
  </body>
</html>
`,
  );
  return page;
}
