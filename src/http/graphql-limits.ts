// Limits on the GraphQL documents clients may send, tuned to our schema, and what
// production hides. Each refusal is a GraphQL error naming the limit's variable:
// - tokens (GRAPHQL_MAX_TOKENS), counted while lexing, before any parse tree is built;
// - depth, aliases, directives and cost (graphql-armor), as validation errors.
// Each is a request error: HTTP 200 for application/json, 400 for
// application/graphql-response+json (requestErrorStatus in errors.ts).
// Measured on our schema (SECURITY.md): the standard introspection query (GraphiQL,
// codegen) is 15 deep and ~185 tokens; our own operations are at most 5 deep, ~70 tokens;
// the largest legitimate query (one page of 100 tasks with every field) costs ~23,300.
// Inputs are checked before graphql-js coerces them (inputLimits): a list argument holds at
// most MAX_LIST_ITEMS, literal or variable, so a huge list costs neither coercion nor SQL;
// a multipart file part mapped onto anything but a File is refused with a short message
// (graphql-js would print the File object's internals into its coercion error).
// In production (NODE_ENV=production) introspection is refused and "Did you mean …?"
// suggestions are removed from every error, so the schema cannot be mapped from outside.
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import {
  getOperationAST,
  GraphQLError,
  isInputObjectType,
  isInputType,
  isListType,
  isNonNullType,
  isScalarType,
  Lexer,
  NoSchemaIntrospectionCustomRule,
  Source,
  TokenKind,
  typeFromAST,
  type ASTVisitor,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLInputType,
  type GraphQLSchema,
  type ValidationContext,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { config } from '../config.ts';
import { isUploadedFile } from '../graphql/builder.ts';

type GraphQLArmorConfig = NonNullable<Parameters<typeof EnvelopArmorPlugin>[0]>;

/** A validation-stage refusal: reported like any invalid document. */
const refuse = (variable: string) => (context: ValidationContext | null, error: GraphQLError) => {
  const message = `${error.message.replace(/^Syntax Error: /, '').replace(/\.$/, '')} (${variable})`;
  context?.reportError(new GraphQLError(message, { extensions: { code: 'GRAPHQL_VALIDATION_FAILED', limit: variable } }));
};

const armorCallbacks = (variable: string) => ({ propagateOnRejection: false, onReject: [refuse(variable)], exposeLimits: true });

/** True if `source` has more than `max` tokens; stops lexing at the first one over. */
export function exceedsTokens(source: string | Source, max: number): boolean {
  const lexer = new Lexer(typeof source === 'string' ? new Source(source) : source);
  let count = 0;
  try {
    while (lexer.advance().kind !== TokenKind.EOF) if (++count > max) return true;
  } catch {
    // A lexing error is the parser's to report, with its position.
  }
  return false;
}

/** Counts tokens (lexing only) before parsing, so a huge document costs no parse tree. */
export function tokenLimit(max: number): Plugin {
  return {
    onParse({ params }) {
      if (exceedsTokens(params.source, max)) {
        throw new GraphQLError(`The query has more than ${max} tokens (GRAPHQL_MAX_TOKENS)`, {
          extensions: { code: 'GRAPHQL_VALIDATION_FAILED', limit: 'GRAPHQL_MAX_TOKENS' },
        });
      }
    },
  };
}

/** graphql-armor's settings for our schema (also used by bench/security.ts to time them). */
export function armorConfig(limits = config.graphqlLimits): GraphQLArmorConfig {
  return {
    maxTokens: { enabled: false }, // tokenLimit above, with our error
    // Suggestions are hidden by hideSchemaHints (armor's own mask misses enum suggestions).
    blockFieldSuggestion: { enabled: false },
    // Inline fragments (`... on Task`) are how unions are read: they add no depth or cost.
    // Introspection counts for depth, so a deep `__schema { types { fields { type … } } }` is refused.
    maxDepth: { n: limits.maxDepth, flattenFragments: true, ignoreIntrospection: false, ...armorCallbacks('GRAPHQL_MAX_DEPTH') },
    maxAliases: { n: limits.maxAliases, allowList: [], ...armorCallbacks('GRAPHQL_MAX_ALIASES') },
    maxDirectives: { n: limits.maxDirectives, ...armorCallbacks('GRAPHQL_MAX_DIRECTIVES') },
    // Introspection's cost is bounded by depth and tokens; counted it would be ~15,600.
    costLimit: { maxCost: limits.maxCost, flattenFragments: true, ignoreIntrospection: true, ...armorCallbacks('GRAPHQL_MAX_COST') },
  };
}

export function documentLimits(): Plugin[] {
  return [tokenLimit(config.graphqlLimits.maxTokens), EnvelopArmorPlugin(armorConfig()), inputLimits()];
}

/**
 * Items one list argument or input field may hold (fixed). Our only lists are status
 * filters (6 distinct values; repeats are dropped before the database); a literal list is
 * also bounded by GRAPHQL_MAX_TOKENS, a variable only by MAX_REQUEST_BYTES (~150,000 items).
 */
export const MAX_LIST_ITEMS = 100;

const tooManyItems = (what: string, items: number) => `${what} has ${items} items, more than the ${MAX_LIST_ITEMS} a list may hold`;

/** Why a variable's value is refused before coercion (`path` names it, e.g. "$input.image"), or null. */
function checkInput(value: unknown, type: GraphQLInputType, path: string): string | null {
  if (value == null) return null;
  if (isNonNullType(type)) return checkInput(value, type.ofType, path);
  if (isUploadedFile(value)) {
    return isScalarType(type) && type.name === 'File' ? null : `${path} is a ${type.name}: a file may only be given for a File`;
  }
  if (isListType(type)) {
    if (!Array.isArray(value)) return checkInput(value, type.ofType, path); // one item, as graphql-js coerces it
    if (value.length > MAX_LIST_ITEMS) return tooManyItems(path, value.length);
    for (let i = 0; i < value.length; i++) {
      const why = checkInput(value[i], type.ofType, `${path}[${i}]`);
      if (why) return why;
    }
    return null;
  }
  if (isInputObjectType(type) && typeof value === 'object' && !Array.isArray(value)) {
    for (const field of Object.values(type.getFields())) {
      if (!Object.hasOwn(value, field.name)) continue;
      const why = checkInput((value as Record<string, unknown>)[field.name], field.type, `${path}.${field.name}`);
      if (why) return why;
    }
  }
  return null; // anything else is graphql-js' to coerce (or refuse)
}

function checkVariables(schema: GraphQLSchema, document: DocumentNode, operationName: string | null | undefined, variables: unknown): string | null {
  const operation = getOperationAST(document, operationName);
  if (!operation || typeof variables !== 'object' || variables === null) return null;
  for (const definition of operation.variableDefinitions ?? []) {
    const type = typeFromAST(schema, definition.type);
    const name = definition.variable.name.value;
    const why = type && isInputType(type) ? checkInput((variables as Record<string, unknown>)[name], type, `$${name}`) : null;
    if (why) return why;
  }
  return null;
}

const listLiteralLimit = (context: ValidationContext): ASTVisitor => ({
  ListValue(node) {
    if (node.values.length > MAX_LIST_ITEMS) {
      context.reportError(new GraphQLError(tooManyItems('A list', node.values.length), { nodes: node, extensions: { code: 'BAD_USER_INPUT' } }));
    }
  },
});

/** MAX_LIST_ITEMS and files only where a File goes, before any coercion; BAD_USER_INPUT (a request error: errors.ts sets its status). */
export function inputLimits(): Plugin {
  const refusal = (message: string): ExecutionResult => ({
    errors: [new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } })],
  });
  return {
    onValidate: ({ addValidationRule }) => addValidationRule(listLiteralLimit),
    onExecute({ args, setResultAndStopExecution }) {
      const why = checkVariables(args.schema, args.document, args.operationName, args.variableValues);
      if (why) setResultAndStopExecution(refusal(why));
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const why = checkVariables(args.schema, args.document, args.operationName, args.variableValues);
      if (why) setResultAndStopExecution(refusal(why));
    },
  };
}

const SUGGESTION = /\s*Did you mean [^?]*\?/g;

function stripSuggestions<T extends { message: string }>(errors: readonly T[] | undefined): void {
  // GraphQLError.message is writable; the errors are ours (fresh per request).
  for (const error of errors ?? []) error.message = error.message.replace(SUGGESTION, '');
}

function stripResult(result: unknown): void {
  if (result && typeof result === 'object' && 'errors' in result) stripSuggestions((result as ExecutionResult).errors);
}

/** Production only: no introspection, no "Did you mean …?" in any error. */
export function hideSchemaHints(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
      return ({ result }) => stripSuggestions(result);
    },
    // Variables are coerced at execution: their errors carry suggestions too.
    onExecute: () => ({ onExecuteDone: ({ result }) => stripResult(result) }),
    onSubscribe: () => ({ onSubscribeResult: ({ result }) => stripResult(result) }),
  };
}
