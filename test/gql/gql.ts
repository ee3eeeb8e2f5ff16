/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  mutation FaultCreate($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n": typeof types.FaultCreateDocument,
    "\n  mutation FaultRun($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.FaultRunDocument,
    "\n  mutation FaultDelete($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.FaultDeleteDocument,
    "\n  query FaultTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status attempts error events { status message } result { id url } } }\n  }\n": typeof types.FaultTaskDocument,
    "\n  mutation CreateWithCallback($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status callbackUrl }\n      ... on InvalidInput { message field }\n    }\n  }\n": typeof types.CreateWithCallbackDocument,
    "\n  query TaskCallbacks($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status error progress attempts version resultOfJob finishedAt callbackUrl\n        result { id format width height byteSize url }\n        callbacks { event attempt at statusCode error }\n      }\n    }\n  }\n": typeof types.TaskCallbacksDocument,
    "\n  mutation DeleteWithCallback($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.DeleteWithCallbackDocument,
    "\n  mutation ClientCreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id status } ... on Error { message } }\n  }\n": typeof types.ClientCreateTaskDocument,
    "\n  mutation ClientRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.ClientRunTaskDocument,
    "\n  query ClientGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.ClientGetTaskDocument,
    "\n  subscription ClientWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width height url } }\n  }\n": typeof types.ClientWatchTaskDocument,
    "\n  mutation CreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status version resize { width height fit format quality withoutEnlargement } source { width height format byteSize } }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on TooManyTasks { limit }\n    }\n  }\n": typeof types.CreateTaskDocument,
    "\n  mutation RunTask($id: ID!) {\n    runTask(id: $id) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidTaskState { status }\n    }\n  }\n": typeof types.RunTaskDocument,
    "\n  mutation DeleteTask($id: ID!) {\n    deleteTask(id: $id) {\n      __typename\n      ... on Task { id status source { id } result { id } resultOfJob }\n      ... on Error { message }\n    }\n  }\n": typeof types.DeleteTaskDocument,
    "\n  query GetTask($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status progress attempts version error resultOfJob startedAt finishedAt createdAt updatedAt\n        source { id url width height format }\n        result { id url width height format byteSize }\n        events { at status message }\n      }\n      ... on Error { message }\n    }\n  }\n": typeof types.GetTaskDocument,
    "\n  query ListTasks($first: Int, $after: String, $status: [TaskStatus!]) {\n    tasks(first: $first, after: $after, status: $status) {\n      edges { cursor node { id status } }\n      pageInfo { hasNextPage endCursor }\n    }\n  }\n": typeof types.ListTasksDocument,
    "\n  mutation SubmitTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n    }\n  }\n": typeof types.SubmitTaskDocument,
    "\n  mutation CreateKeyed($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on IdempotencyKeyReused { taskId }\n    }\n  }\n": typeof types.CreateKeyedDocument,
    "\n  mutation CreateUploadKeyed($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } }\n      ... on Error { message }\n    }\n  }\n": typeof types.CreateUploadKeyedDocument,
    "\n  mutation DeleteKeyed($id: ID!) {\n    deleteTask(id: $id) { __typename }\n  }\n": typeof types.DeleteKeyedDocument,
    "\n  mutation UpgradeRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.UpgradeRunTaskDocument,
    "\n  query UpgradeTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status error result { width } } }\n  }\n": typeof types.UpgradeTaskDocument,
    "\n  query TaskStatusDuringOutage($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.TaskStatusDuringOutageDocument,
    "\n  mutation CreateTaskSec($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status result { id url } }\n      ... on Error { message }\n      ... on TooManyTasks { limit }\n    }\n  }\n": typeof types.CreateTaskSecDocument,
    "\n  query TaskSec($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task { id status error attempts source { id url } result { id url } events { status } }\n      ... on Error { message }\n    }\n  }\n": typeof types.TaskSecDocument,
    "\n  mutation RunTaskSec($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } ... on Error { message } }\n  }\n": typeof types.RunTaskSecDocument,
    "\n  mutation DeleteTaskSec($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.DeleteTaskSecDocument,
    "\n  query ListSec($first: Int, $after: String) {\n    tasks(first: $first, after: $after) { edges { node { id } } }\n  }\n": typeof types.ListSecDocument,
    "\n  mutation CrossRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.CrossRunTaskDocument,
    "\n  subscription CrossWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width } }\n  }\n": typeof types.CrossWatchTaskDocument,
    "\n  subscription CrossWatchTasks {\n    tasksUpdated { id status version }\n  }\n": typeof types.CrossWatchTasksDocument,
    "\n  mutation LiveRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.LiveRunTaskDocument,
    "\n  mutation LiveDeleteTask($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": typeof types.LiveDeleteTaskDocument,
    "\n  query LiveGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status version } }\n  }\n": typeof types.LiveGetTaskDocument,
    "\n  subscription WatchTask($id: ID!) {\n    taskUpdated(id: $id) {\n      id status progress version error\n      result { width height url }\n      events { status }\n    }\n  }\n": typeof types.WatchTaskDocument,
    "\n  mutation LiveCreateStreamTicket {\n    createStreamTicket { ticket expiresAt }\n  }\n": typeof types.LiveCreateStreamTicketDocument,
    "\n  query LiveListTasks {\n    tasks(first: 1) { edges { node { id } } }\n  }\n": typeof types.LiveListTasksDocument,
    "\n  subscription WatchTasks($status: [TaskStatus!]) {\n    tasksUpdated(status: $status) { id status version }\n  }\n": typeof types.WatchTasksDocument,
    "query LiveSource($id: ID!) { task(id: $id) { ... on Task { source { id } } } }": typeof types.LiveSourceDocument,
    "\n  mutation ApolloCreateUpload($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } maxBytes expiresAt }\n      ... on Error { message }\n    }\n  }\n": typeof types.ApolloCreateUploadDocument,
    "\n  mutation ApolloCreateTaskFromUpload($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status source { byteSize width height url } }\n      ... on Error { message }\n    }\n  }\n": typeof types.ApolloCreateTaskFromUploadDocument,
    "\n  subscription ApolloWatchUploadedTask($id: ID!) {\n    taskUpdated(id: $id) { id status version result { format width height url } }\n  }\n": typeof types.ApolloWatchUploadedTaskDocument,
    "\n  mutation CreateTaskForPriority($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n": typeof types.CreateTaskForPriorityDocument,
    "\n  query TaskStatusForPriority($id: ID!) { task(id: $id) { __typename ... on Task { status } } }\n": typeof types.TaskStatusForPriorityDocument,
};
const documents: Documents = {
    "\n  mutation FaultCreate($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n": types.FaultCreateDocument,
    "\n  mutation FaultRun($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.FaultRunDocument,
    "\n  mutation FaultDelete($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.FaultDeleteDocument,
    "\n  query FaultTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status attempts error events { status message } result { id url } } }\n  }\n": types.FaultTaskDocument,
    "\n  mutation CreateWithCallback($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status callbackUrl }\n      ... on InvalidInput { message field }\n    }\n  }\n": types.CreateWithCallbackDocument,
    "\n  query TaskCallbacks($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status error progress attempts version resultOfJob finishedAt callbackUrl\n        result { id format width height byteSize url }\n        callbacks { event attempt at statusCode error }\n      }\n    }\n  }\n": types.TaskCallbacksDocument,
    "\n  mutation DeleteWithCallback($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.DeleteWithCallbackDocument,
    "\n  mutation ClientCreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id status } ... on Error { message } }\n  }\n": types.ClientCreateTaskDocument,
    "\n  mutation ClientRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.ClientRunTaskDocument,
    "\n  query ClientGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n": types.ClientGetTaskDocument,
    "\n  subscription ClientWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width height url } }\n  }\n": types.ClientWatchTaskDocument,
    "\n  mutation CreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status version resize { width height fit format quality withoutEnlargement } source { width height format byteSize } }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on TooManyTasks { limit }\n    }\n  }\n": types.CreateTaskDocument,
    "\n  mutation RunTask($id: ID!) {\n    runTask(id: $id) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidTaskState { status }\n    }\n  }\n": types.RunTaskDocument,
    "\n  mutation DeleteTask($id: ID!) {\n    deleteTask(id: $id) {\n      __typename\n      ... on Task { id status source { id } result { id } resultOfJob }\n      ... on Error { message }\n    }\n  }\n": types.DeleteTaskDocument,
    "\n  query GetTask($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status progress attempts version error resultOfJob startedAt finishedAt createdAt updatedAt\n        source { id url width height format }\n        result { id url width height format byteSize }\n        events { at status message }\n      }\n      ... on Error { message }\n    }\n  }\n": types.GetTaskDocument,
    "\n  query ListTasks($first: Int, $after: String, $status: [TaskStatus!]) {\n    tasks(first: $first, after: $after, status: $status) {\n      edges { cursor node { id status } }\n      pageInfo { hasNextPage endCursor }\n    }\n  }\n": types.ListTasksDocument,
    "\n  mutation SubmitTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n    }\n  }\n": types.SubmitTaskDocument,
    "\n  mutation CreateKeyed($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on IdempotencyKeyReused { taskId }\n    }\n  }\n": types.CreateKeyedDocument,
    "\n  mutation CreateUploadKeyed($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } }\n      ... on Error { message }\n    }\n  }\n": types.CreateUploadKeyedDocument,
    "\n  mutation DeleteKeyed($id: ID!) {\n    deleteTask(id: $id) { __typename }\n  }\n": types.DeleteKeyedDocument,
    "\n  mutation UpgradeRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.UpgradeRunTaskDocument,
    "\n  query UpgradeTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status error result { width } } }\n  }\n": types.UpgradeTaskDocument,
    "\n  query TaskStatusDuringOutage($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n": types.TaskStatusDuringOutageDocument,
    "\n  mutation CreateTaskSec($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status result { id url } }\n      ... on Error { message }\n      ... on TooManyTasks { limit }\n    }\n  }\n": types.CreateTaskSecDocument,
    "\n  query TaskSec($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task { id status error attempts source { id url } result { id url } events { status } }\n      ... on Error { message }\n    }\n  }\n": types.TaskSecDocument,
    "\n  mutation RunTaskSec($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } ... on Error { message } }\n  }\n": types.RunTaskSecDocument,
    "\n  mutation DeleteTaskSec($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.DeleteTaskSecDocument,
    "\n  query ListSec($first: Int, $after: String) {\n    tasks(first: $first, after: $after) { edges { node { id } } }\n  }\n": types.ListSecDocument,
    "\n  mutation CrossRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.CrossRunTaskDocument,
    "\n  subscription CrossWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width } }\n  }\n": types.CrossWatchTaskDocument,
    "\n  subscription CrossWatchTasks {\n    tasksUpdated { id status version }\n  }\n": types.CrossWatchTasksDocument,
    "\n  mutation LiveRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.LiveRunTaskDocument,
    "\n  mutation LiveDeleteTask($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n": types.LiveDeleteTaskDocument,
    "\n  query LiveGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status version } }\n  }\n": types.LiveGetTaskDocument,
    "\n  subscription WatchTask($id: ID!) {\n    taskUpdated(id: $id) {\n      id status progress version error\n      result { width height url }\n      events { status }\n    }\n  }\n": types.WatchTaskDocument,
    "\n  mutation LiveCreateStreamTicket {\n    createStreamTicket { ticket expiresAt }\n  }\n": types.LiveCreateStreamTicketDocument,
    "\n  query LiveListTasks {\n    tasks(first: 1) { edges { node { id } } }\n  }\n": types.LiveListTasksDocument,
    "\n  subscription WatchTasks($status: [TaskStatus!]) {\n    tasksUpdated(status: $status) { id status version }\n  }\n": types.WatchTasksDocument,
    "query LiveSource($id: ID!) { task(id: $id) { ... on Task { source { id } } } }": types.LiveSourceDocument,
    "\n  mutation ApolloCreateUpload($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } maxBytes expiresAt }\n      ... on Error { message }\n    }\n  }\n": types.ApolloCreateUploadDocument,
    "\n  mutation ApolloCreateTaskFromUpload($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status source { byteSize width height url } }\n      ... on Error { message }\n    }\n  }\n": types.ApolloCreateTaskFromUploadDocument,
    "\n  subscription ApolloWatchUploadedTask($id: ID!) {\n    taskUpdated(id: $id) { id status version result { format width height url } }\n  }\n": types.ApolloWatchUploadedTaskDocument,
    "\n  mutation CreateTaskForPriority($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n": types.CreateTaskForPriorityDocument,
    "\n  query TaskStatusForPriority($id: ID!) { task(id: $id) { __typename ... on Task { status } } }\n": types.TaskStatusForPriorityDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation FaultCreate($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n"): (typeof documents)["\n  mutation FaultCreate($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation FaultRun($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation FaultRun($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation FaultDelete($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation FaultDelete($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query FaultTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status attempts error events { status message } result { id url } } }\n  }\n"): (typeof documents)["\n  query FaultTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status attempts error events { status message } result { id url } } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateWithCallback($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status callbackUrl }\n      ... on InvalidInput { message field }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateWithCallback($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status callbackUrl }\n      ... on InvalidInput { message field }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query TaskCallbacks($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status error progress attempts version resultOfJob finishedAt callbackUrl\n        result { id format width height byteSize url }\n        callbacks { event attempt at statusCode error }\n      }\n    }\n  }\n"): (typeof documents)["\n  query TaskCallbacks($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status error progress attempts version resultOfJob finishedAt callbackUrl\n        result { id format width height byteSize url }\n        callbacks { event attempt at statusCode error }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation DeleteWithCallback($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation DeleteWithCallback($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ClientCreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id status } ... on Error { message } }\n  }\n"): (typeof documents)["\n  mutation ClientCreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id status } ... on Error { message } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ClientRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation ClientRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query ClientGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  query ClientGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription ClientWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width height url } }\n  }\n"): (typeof documents)["\n  subscription ClientWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width height url } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status version resize { width height fit format quality withoutEnlargement } source { width height format byteSize } }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on TooManyTasks { limit }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status version resize { width height fit format quality withoutEnlargement } source { width height format byteSize } }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on TooManyTasks { limit }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RunTask($id: ID!) {\n    runTask(id: $id) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidTaskState { status }\n    }\n  }\n"): (typeof documents)["\n  mutation RunTask($id: ID!) {\n    runTask(id: $id) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidTaskState { status }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation DeleteTask($id: ID!) {\n    deleteTask(id: $id) {\n      __typename\n      ... on Task { id status source { id } result { id } resultOfJob }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  mutation DeleteTask($id: ID!) {\n    deleteTask(id: $id) {\n      __typename\n      ... on Task { id status source { id } result { id } resultOfJob }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query GetTask($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status progress attempts version error resultOfJob startedAt finishedAt createdAt updatedAt\n        source { id url width height format }\n        result { id url width height format byteSize }\n        events { at status message }\n      }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  query GetTask($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task {\n        id status progress attempts version error resultOfJob startedAt finishedAt createdAt updatedAt\n        source { id url width height format }\n        result { id url width height format byteSize }\n        events { at status message }\n      }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query ListTasks($first: Int, $after: String, $status: [TaskStatus!]) {\n    tasks(first: $first, after: $after, status: $status) {\n      edges { cursor node { id status } }\n      pageInfo { hasNextPage endCursor }\n    }\n  }\n"): (typeof documents)["\n  query ListTasks($first: Int, $after: String, $status: [TaskStatus!]) {\n    tasks(first: $first, after: $after, status: $status) {\n      edges { cursor node { id status } }\n      pageInfo { hasNextPage endCursor }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation SubmitTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  mutation SubmitTask($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateKeyed($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on IdempotencyKeyReused { taskId }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateKeyed($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status }\n      ... on Error { message }\n      ... on InvalidInput { field }\n      ... on IdempotencyKeyReused { taskId }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateUploadKeyed($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateUploadKeyed($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation DeleteKeyed($id: ID!) {\n    deleteTask(id: $id) { __typename }\n  }\n"): (typeof documents)["\n  mutation DeleteKeyed($id: ID!) {\n    deleteTask(id: $id) { __typename }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation UpgradeRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation UpgradeRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query UpgradeTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status error result { width } } }\n  }\n"): (typeof documents)["\n  query UpgradeTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status error result { width } } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query TaskStatusDuringOutage($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  query TaskStatusDuringOutage($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateTaskSec($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status result { id url } }\n      ... on Error { message }\n      ... on TooManyTasks { limit }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateTaskSec($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status result { id url } }\n      ... on Error { message }\n      ... on TooManyTasks { limit }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query TaskSec($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task { id status error attempts source { id url } result { id url } events { status } }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  query TaskSec($id: ID!) {\n    task(id: $id) {\n      __typename\n      ... on Task { id status error attempts source { id url } result { id url } events { status } }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RunTaskSec($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } ... on Error { message } }\n  }\n"): (typeof documents)["\n  mutation RunTaskSec($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } ... on Error { message } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation DeleteTaskSec($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation DeleteTaskSec($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query ListSec($first: Int, $after: String) {\n    tasks(first: $first, after: $after) { edges { node { id } } }\n  }\n"): (typeof documents)["\n  query ListSec($first: Int, $after: String) {\n    tasks(first: $first, after: $after) { edges { node { id } } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CrossRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation CrossRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription CrossWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width } }\n  }\n"): (typeof documents)["\n  subscription CrossWatchTask($id: ID!) {\n    taskUpdated(id: $id) { id status progress version result { width } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription CrossWatchTasks {\n    tasksUpdated { id status version }\n  }\n"): (typeof documents)["\n  subscription CrossWatchTasks {\n    tasksUpdated { id status version }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation LiveRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation LiveRunTask($id: ID!) {\n    runTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation LiveDeleteTask($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"): (typeof documents)["\n  mutation LiveDeleteTask($id: ID!) {\n    deleteTask(id: $id) { __typename ... on Task { id status } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query LiveGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status version } }\n  }\n"): (typeof documents)["\n  query LiveGetTask($id: ID!) {\n    task(id: $id) { __typename ... on Task { id status version } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription WatchTask($id: ID!) {\n    taskUpdated(id: $id) {\n      id status progress version error\n      result { width height url }\n      events { status }\n    }\n  }\n"): (typeof documents)["\n  subscription WatchTask($id: ID!) {\n    taskUpdated(id: $id) {\n      id status progress version error\n      result { width height url }\n      events { status }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation LiveCreateStreamTicket {\n    createStreamTicket { ticket expiresAt }\n  }\n"): (typeof documents)["\n  mutation LiveCreateStreamTicket {\n    createStreamTicket { ticket expiresAt }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query LiveListTasks {\n    tasks(first: 1) { edges { node { id } } }\n  }\n"): (typeof documents)["\n  query LiveListTasks {\n    tasks(first: 1) { edges { node { id } } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription WatchTasks($status: [TaskStatus!]) {\n    tasksUpdated(status: $status) { id status version }\n  }\n"): (typeof documents)["\n  subscription WatchTasks($status: [TaskStatus!]) {\n    tasksUpdated(status: $status) { id status version }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query LiveSource($id: ID!) { task(id: $id) { ... on Task { source { id } } } }"): (typeof documents)["query LiveSource($id: ID!) { task(id: $id) { ... on Task { source { id } } } }"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ApolloCreateUpload($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } maxBytes expiresAt }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  mutation ApolloCreateUpload($input: CreateUploadInput!) {\n    createUpload(input: $input) {\n      __typename\n      ... on PendingUpload { id url method headers { name value } maxBytes expiresAt }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ApolloCreateTaskFromUpload($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status source { byteSize width height url } }\n      ... on Error { message }\n    }\n  }\n"): (typeof documents)["\n  mutation ApolloCreateTaskFromUpload($input: CreateTaskInput!) {\n    createTask(input: $input) {\n      __typename\n      ... on Task { id status source { byteSize width height url } }\n      ... on Error { message }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription ApolloWatchUploadedTask($id: ID!) {\n    taskUpdated(id: $id) { id status version result { format width height url } }\n  }\n"): (typeof documents)["\n  subscription ApolloWatchUploadedTask($id: ID!) {\n    taskUpdated(id: $id) { id status version result { format width height url } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateTaskForPriority($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n"): (typeof documents)["\n  mutation CreateTaskForPriority($input: CreateTaskInput!) {\n    createTask(input: $input) { __typename ... on Task { id } }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query TaskStatusForPriority($id: ID!) { task(id: $id) { __typename ... on Task { status } } }\n"): (typeof documents)["\n  query TaskStatusForPriority($id: ID!) { task(id: $id) { __typename ... on Task { status } } }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;