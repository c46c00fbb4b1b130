//! The OpenAPI 3 document of `/api/v1`, written out by hand: a test checks
//! that every route the router serves is in it, and nothing else.

use serde_json::{json, Value};

/// One operation: its summary, parameters and responses.
fn op(summary: &str, params: &[(&str, &str, &str)], responses: Value) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|(name, place, description)| {
            json!({
                "name": name,
                "in": place,
                "required": *place == "path",
                "description": description,
                "schema": { "type": if *name == "count" || *name == "index" { "integer" } else if *name == "timeout" { "number" } else { "string" } },
            })
        })
        .collect();
    json!({ "summary": summary, "parameters": parameters, "responses": responses })
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({ "200": { "description": description, "content": { "application/json": { "schema": schema } } } })
}

/// `operation` with a JSON request body of `schema` (or a list of them).
fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] = json!({ "required": true, "content": { "application/json": {
        "schema": { "oneOf": [schema.clone(), { "type": "array", "items": schema }] } } } });
    operation
}

fn obj(properties: Value) -> Value {
    json!({ "type": "object", "properties": properties })
}

/// The document served at `/api/v1/openapi.json`.
pub fn document() -> Value {
    let s = |t: &str| json!({ "type": t });
    let opt = |t: &str| json!({ "type": [t, "null"] });
    let summary = obj(json!({
        "id": s("string"), "server": s("string"), "mailbox": s("string"), "from": s("string"),
        "to": { "type": "array", "items": s("string") }, "subject": s("string"),
        "size": s("integer"), "date": s("string"),
    }));
    let hop = obj(json!({
        "server": s("string"), "event": { "type": "string", "enum": ["received", "queued", "relayed", "delivered", "bounced"] },
        "time": s("string"), "reply": opt("string"), "recipient": opt("string"), "to": opt("string"),
        "detail": opt("string"), "message": opt("string"),
    }));
    let session = obj(json!({
        "id": s("string"), "server": s("string"), "protocol": s("string"), "peer": s("string"),
        "local": s("string"), "start": s("string"), "end": opt("string"), "tls": s("boolean"),
        "bytes": s("integer"), "truncated": s("boolean"),
    }));
    let id = (
        "id",
        "path",
        "A message id as the lists give it (`mailbox~uid`)",
    );
    let sid = ("id", "path", "A session id as /sessions gives it");
    // The keys of a fault, as a network file's `faults:` writes them (scenarios/README.md).
    let fault = obj(json!({
        "server": s("string"), "link": { "type": "string", "description": "FROM -> TO" },
        "dns": obj(json!({ "name": s("string"), "type": s("string"), "answer": { "type": "string", "enum": ["servfail", "nxdomain", "timeout", "refused"] } })),
        "on": { "type": "string", "enum": ["connect", "greeting", "helo", "mail", "rcpt", "data", "end_of_data", "auth", "pop3_user", "pop3_pass", "retr", "dele", "quit"] },
        "match": s("string"), "reply": s("string"), "action": { "type": "string", "enum": ["drop"] },
        "delay": s("string"), "times": { "type": ["integer", "string"] }, "every": s("integer"), "probability": s("number"),
    }));
    let fault_state = obj(json!({
        "id": s("integer"), "target": s("object"), "times": { "type": ["object", "string"] },
        "matched": s("integer"), "fired": s("integer"),
    }));
    let bad = json!({ "description": "Not a valid fault", "content": { "application/json": { "schema": obj(json!({ "error": s("string") })) } } });
    let error = json!({ "description": "Not found", "content": { "application/json": { "schema": obj(json!({ "error": s("string") })) } } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mailnet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A running mail network: its servers, mailboxes, queue, sessions and events.",
        },
        "servers": [{ "url": "/" }],
        "paths": {
            "/api/v1/openapi.json": { "get": op("This document", &[], json!({ "200": { "description": "OpenAPI 3" } })) },
            "/api/v1/servers": { "get": op("Servers: names, domains, ports, DNS records", &[], json_ok("Servers", obj(json!({
                "servers": { "type": "array", "items": obj(json!({
                    "name": s("string"), "domains": { "type": "array", "items": s("string") }, "address": s("string"),
                    "smtp": s("integer"), "pop3": s("integer"), "smtps": s("integer"), "pop3s": s("integer"), "submission": opt("integer"),
                    "users": { "type": "array", "items": s("string") }, "dns": { "type": "array", "items": obj(json!({
                        "name": s("string"), "type": s("string"), "ttl": s("integer"), "data": s("string") })) },
                })) },
                "dns": opt("string"),
            })))) },
            "/api/v1/mailboxes": { "get": op("Every user's mailbox with its message count", &[], json_ok("Mailboxes", obj(json!({
                "mailboxes": { "type": "array", "items": obj(json!({ "address": s("string"), "server": s("string"), "messages": s("integer") })) },
            })))) },
            "/api/v1/mailboxes/{address}/messages": { "get": op("A mailbox's messages, oldest first",
                &[("address", "path", "The mailbox, e.g. usr1@gmail.com")],
                json_ok("Messages", obj(json!({ "messages": { "type": "array", "items": summary.clone() } })))) },
            "/api/v1/messages/{id}": {
                "get": op("A message: headers, text, HTML, attachments, and its path across servers", &[id],
                    json_ok("The message", json!({ "allOf": [summary, obj(json!({
                        "headers": { "type": "array", "items": { "type": "array", "items": s("string") } },
                        "text": opt("string"), "html": opt("string"),
                        "attachments": { "type": "array", "items": obj(json!({
                            "index": s("integer"), "filename": opt("string"), "content_type": s("string"), "size": s("integer") })) },
                        "path": { "type": "array", "items": hop },
                    }))] }))),
                "delete": op("Delete a message (POP3 sees the same mailbox)", &[id], json!({
                    "204": { "description": "Deleted" }, "404": error.clone(),
                    "409": { "description": "A POP3 session holds the maildrop" } })),
            },
            "/api/v1/messages/{id}/raw": { "get": op("The stored bytes", &[id], json!({
                "200": { "description": "The message", "content": { "message/rfc822": {} } }, "404": error.clone() })) },
            "/api/v1/messages/{id}/attachments/{index}": { "get": op("One attachment, decoded",
                &[id, ("index", "path", "Its number in the message's attachments list")],
                json!({ "200": { "description": "The attachment, with its content type" }, "404": error.clone() })) },
            "/api/v1/queue": { "get": op("The relay queue per server: recipient, attempts, last reply, next retry", &[],
                json_ok("The queue", obj(json!({ "servers": { "type": "array", "items": obj(json!({
                    "server": s("string"), "entries": { "type": "array", "items": obj(json!({
                        "id": s("string"), "from": s("string"), "recipient": s("string"), "domain": s("string"),
                        "attempts": s("integer"), "last_reply": opt("string"), "next_retry": opt("string"), "queued_at": s("string") })) } })) } })))) },
            "/api/v1/events": { "get": op("Server-Sent Events: received, queued, relayed, delivered, bounced, session_opened, session_closed; data is JSON (type, time, server, message, from, recipient, reply, session, to, detail)", &[],
                json!({ "200": { "description": "An event stream", "content": { "text/event-stream": {} } } })) },
            "/api/v1/wait": { "get": op("Long-poll until a mailbox holds `count` messages",
                &[("mailbox", "query", "The mailbox"), ("count", "query", "How many messages (default 1)"), ("timeout", "query", "Seconds (default 10, at most 300)")],
                json!({ "200": { "description": "The messages", "content": { "application/json": { "schema": obj(json!({ "messages": { "type": "array", "items": summary } })) } } },
                        "408": { "description": "Not that many messages in time" }, "404": error.clone() })) },
            "/api/v1/sessions": { "get": op("The most recent sessions, newest first", &[],
                json_ok("Sessions", obj(json!({ "sessions": { "type": "array", "items": session.clone() } })))) },
            "/api/v1/sessions/{id}": { "get": op("A session with its transcript (credentials hidden)", &[sid],
                json_ok("The session", json!({ "allOf": [session, obj(json!({ "transcript": { "type": "array", "items": obj(json!({
                    "dir": { "type": "string", "enum": ["C", "S"] }, "time": s("string"), "text": s("string") })) } }))] }))) },
            "/api/v1/sessions/{id}/pcap": { "get": op("The session as a pcapng capture (decrypted when it used TLS)", &[sid],
                json!({ "200": { "description": "pcapng", "content": { "application/vnd.tcpdump.pcap": {} } }, "404": error })) },
            "/api/v1/faults": {
                "get": op("The faults in force, with how many events each matched and fired on, and the seed", &[],
                    json_ok("Faults", obj(json!({ "seed": s("integer"), "faults": { "type": "array", "items": fault_state.clone() } })))),
                "put": with_body(op("Replace every fault with the list given (an object is a list of one)", &[],
                    json!({ "200": { "description": "The faults now in force", "content": { "application/json": { "schema": obj(json!({ "seed": s("integer"), "faults": { "type": "array", "items": fault_state.clone() } })) } } }, "400": bad.clone() })), fault.clone()),
                "post": with_body(op("Add one fault", &[],
                    json!({ "201": { "description": "Its id", "content": { "application/json": { "schema": obj(json!({ "id": s("integer") })) } } }, "400": bad.clone() })), fault.clone()),
                "delete": op("Remove every fault", &[], json!({ "204": { "description": "No faults in force" } })),
            },
            "/api/v1/faults/{id}": { "delete": op("Remove one fault", &[("id", "path", "A fault id as /faults gives it")],
                json!({ "204": { "description": "Removed" }, "404": error.clone() })) },
            "/api/v1/runs": { "get": op("Scenario results of `mailnet test --web`", &[],
                json_ok("Runs", obj(json!({ "runs": { "type": "array", "items": { "type": "object" } } })))) },
        },
    })
}
