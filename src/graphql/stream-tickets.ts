// createStreamTicket: the API key (sent in the Authorization header) traded for a ticket
// that opens one SSE subscription from an EventSource without the key in its URL.
import { createStreamTicket, STREAM_TICKET_TTL_SECONDS } from '../tasks/keys.ts';
import { builder } from './builder.ts';

const StreamTicketRef = builder.objectRef<{ ticket: string; expiresAt: Date }>('StreamTicket').implement({
  description: `Opens SSE subscriptions as \`GET /graphql?query=…&ticket=<ticket>\` (Accept: text/event-stream) until expiresAt (${STREAM_TICKET_TTL_SECONDS} s); refused anywhere else`,
  fields: (t) => ({
    ticket: t.exposeString('ticket'),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
  }),
});

builder.mutationFields((t) => ({
  createStreamTicket: t.field({
    type: StreamTicketRef,
    description: 'A short-lived ticket for EventSource, so the API key stays out of URLs (access logs, browser history)',
    resolve: (_, _args, { caller }) => createStreamTicket(caller),
  }),
}));
