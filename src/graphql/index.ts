// The schema: the type modules register themselves on the builder.
import { builder } from './builder.ts';
import './enums.ts';
import './errors.ts';
import './task.ts';
import './subscriptions.ts';
import './stream-tickets.ts';
import './upload.ts';

export const schema = builder.toSchema({ sortSchema: false });
