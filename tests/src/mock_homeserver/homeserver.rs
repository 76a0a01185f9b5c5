//! The built-in homeserver behind the overrides: every endpoint the gateway calls, answered
//! as the Matrix specification has it (and, where it leaves room, as Synapse does).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use wiremock::{Request, Respond, ResponseTemplate};

use super::{answer, error_body, identity, Endpoint, Room, World, BOT, GHOST_PREFIX, SERVER_NAME};

/// The built-in homeserver: every known endpoint, as the specification has it.
pub(super) struct Homeserver {
    pub(super) world: std::sync::Arc<std::sync::Mutex<World>>,
}

impl Respond for Homeserver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut world = self.world.lock().expect("not poisoned");
        let (status, body) = homeserver(&mut world, request);
        let template = answer(&mut world, request, status, body);
        match (status, Endpoint::of(request)) {
            (200, Some(Endpoint::Download { media })) => {
                template.set_body_raw(world.media[&media].clone(), "application/octet-stream")
            }
            _ => template,
        }
    }
}

/// What a homeserver answers to `request`: status and JSON body.
fn homeserver(world: &mut World, request: &Request) -> (u16, Value) {
    let Some(endpoint) = Endpoint::of(request) else {
        return (404, error_body("M_UNRECOGNIZED", "unrecognized endpoint"));
    };
    let token = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    // Looking up an alias or a display name needs no access token (ruma sends none).
    let public = matches!(
        endpoint,
        Endpoint::ResolveAlias { .. } | Endpoint::GetDisplayName { .. }
    );
    match token {
        None if public => {}
        None => return (401, error_body("M_MISSING_TOKEN", "missing access token")),
        Some(t) if t != format!("Bearer {}", crate::AS_TOKEN) => {
            return (401, error_body("M_UNKNOWN_TOKEN", "unknown access token"))
        }
        Some(_) => {}
    }
    let (user, _) = identity(request);
    let ours = |u: &str| u == BOT || (u.starts_with(GHOST_PREFIX) && u.ends_with(":localhost"));
    if !ours(&user) {
        return (
            403,
            error_body(
                "M_FORBIDDEN",
                "Application service cannot masquerade as this user",
            ),
        );
    }
    // The bot is registered with the appservice; a ghost must be registered to be used.
    if user != BOT && !world.users.contains(&user) && endpoint != Endpoint::Register {
        return (
            403,
            error_body(
                "M_FORBIDDEN",
                "Application service has not registered this user",
            ),
        );
    }
    let body: Value = request.body_json().unwrap_or(Value::Null);
    let ok = |v: Value| (200, v);
    let forbidden = |why: &str| (403, error_body("M_FORBIDDEN", why));
    let not_found = |why: &str| (404, error_body("M_NOT_FOUND", why));
    match endpoint {
        Endpoint::Register => {
            if body["type"] != "m.login.application_service" {
                return (
                    401,
                    json!({"flows": [{"stages": ["m.login.application_service"]}], "params": {}}),
                );
            }
            let Some(localpart) = body["username"].as_str() else {
                return (
                    400,
                    error_body("M_INVALID_USERNAME", "username is required"),
                );
            };
            let user = format!("@{localpart}:{SERVER_NAME}");
            if !ours(&user) {
                return (
                    400,
                    error_body("M_EXCLUSIVE", "not in the appservice's namespace"),
                );
            }
            if !world.users.insert(user.clone()) {
                return (400, error_body("M_USER_IN_USE", "User ID already taken."));
            }
            ok(json!({ "user_id": user }))
        }
        Endpoint::GetDisplayName { user } => match world.display_names.get(&user) {
            Some(name) => ok(json!({ "displayname": name })),
            None => not_found("Profile was not found"),
        },
        Endpoint::SetDisplayName { user: target } => {
            if target != user {
                return forbidden("Cannot set another user's displayname");
            }
            match body["displayname"].as_str() {
                Some(name) => world.display_names.insert(user, name.to_owned()),
                None => world.display_names.remove(&user),
            };
            ok(json!({}))
        }
        Endpoint::ResolveAlias { alias } => match world.aliases.get(&alias) {
            Some(room) => ok(json!({ "room_id": room, "servers": [SERVER_NAME] })),
            None => not_found(&format!("Room alias {alias} not found")),
        },
        Endpoint::CreateRoom => {
            let alias = body["room_alias_name"]
                .as_str()
                .map(|name| format!("#{name}:{SERVER_NAME}"));
            if alias
                .as_ref()
                .is_some_and(|a| world.aliases.contains_key(a))
            {
                return (400, error_body("M_ROOM_IN_USE", "Room alias already taken"));
            }
            let room_id = format!("!mockroom{}:{SERVER_NAME}", world.next_id());
            let mut members = BTreeMap::from([(user.clone(), "join".to_owned())]);
            for invited in body["invite"].as_array().into_iter().flatten() {
                if let Some(invited) = invited.as_str() {
                    members.insert(invited.to_owned(), "invite".to_owned());
                }
            }
            if let Some(alias) = &alias {
                world.aliases.insert(alias.clone(), room_id.clone());
            }
            world.rooms.push(Room {
                room_id: room_id.clone(),
                alias,
                creator: user,
                create: body,
                members,
            });
            ok(json!({ "room_id": room_id }))
        }
        Endpoint::Invite { room } => {
            let Some(target) = body["user_id"].as_str() else {
                return (400, error_body("M_BAD_JSON", "user_id is required"));
            };
            let Some(r) = world.room_mut(&room) else {
                return not_found("Unknown room");
            };
            if r.members.get(&user).map(String::as_str) != Some("join") {
                return forbidden(&format!("{user} is not in the room"));
            }
            if r.members.get(target).map(String::as_str) == Some("join") {
                // Synapse's words, which the gateway reads.
                return forbidden(&format!("{target} is already in the room."));
            }
            r.members.insert(target.to_owned(), "invite".to_owned());
            ok(json!({}))
        }
        Endpoint::Join { room } => {
            let Some(r) = world.room_mut(&room) else {
                return not_found("Unknown room");
            };
            if !r.members.contains_key(&user) {
                return forbidden("You are not invited to this room.");
            }
            r.members.insert(user, "join".to_owned());
            ok(json!({ "room_id": room }))
        }
        Endpoint::RoomSend {
            room,
            event_type,
            txn,
        } => {
            let Some(r) = world.room_mut(&room) else {
                return not_found("Unknown room");
            };
            if r.members.get(&user).map(String::as_str) != Some("join") {
                return forbidden(&format!("User {user} not in room {room}"));
            }
            let event_id = world.land(&user, &room, &event_type, &txn, &body);
            ok(json!({ "event_id": event_id }))
        }
        Endpoint::Redact { .. } => ok(json!({ "event_id": format!("$mock{}", world.next_id()) })),
        Endpoint::Upload => {
            let media = format!("mockmedia{}", world.next_id());
            world.media.insert(media.clone(), request.body.clone());
            ok(json!({ "content_uri": format!("mxc://{SERVER_NAME}/{media}") }))
        }
        Endpoint::Download { media } => match world.media.get(&media) {
            // The bytes are put in by the responder.
            Some(_) => ok(Value::Null),
            None => not_found("Not found"),
        },
        Endpoint::DeleteMedia { media } => {
            world.media.remove(&media);
            ok(json!({}))
        }
    }
}
