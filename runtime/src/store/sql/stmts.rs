//! The statements of the SQL store, in MySQL form (`?` placeholders, `` `row` ``
//! quoted); the PostgreSQL client numbers the placeholders and unquotes `row`. Their
//! texts are the Go server's, since they show in error messages
//! (`sql: error executing "<statement>": ...`).

pub(super) const LOCK_SELECT: &str = "SELECT id, tick from StoreLock FOR UPDATE";
pub(super) const LOCK_INSERT: &str = "INSERT INTO StoreLock (id, tick) VALUES (?, ?)";
pub(super) const LOCK_UPDATE: &str = "UPDATE StoreLock SET id=?, tick=?";
pub(super) const HAS_SERVER_INFO: &str = "SELECT COUNT(uniquerow) FROM ServerInfo";
pub(super) const UPDATE_SERVER_INFO: &str =
    "UPDATE ServerInfo SET id=?, proto=?, version=? WHERE uniquerow=1";
pub(super) const ADD_SERVER_INFO: &str =
    "INSERT INTO ServerInfo (id, proto, version) VALUES (?, ?, ?)";
pub(super) const ADD_CLIENT: &str = "INSERT INTO Clients (id, hbinbox, proto) VALUES (?, ?, ?)";
pub(super) const DELETE_CLIENT: &str = "DELETE FROM Clients WHERE id=?";
pub(super) const ADD_CHANNEL: &str =
    "INSERT INTO Channels (id, name, maxmsgs, maxbytes, maxage) VALUES (?, ?, ?, ?, ?)";
pub(super) const STORE_MSG: &str = "INSERT INTO Messages VALUES (?, ?, ?, ?, ?)";
pub(super) const LOOKUP_MSG: &str = "SELECT timestamp, data FROM Messages WHERE id=? AND seq=?";
pub(super) const UPDATE_CHANNEL_MAX_SEQ: &str = "UPDATE Channels SET maxseq=? WHERE id=?";
pub(super) const GET_SIZE_OF_MSG: &str = "SELECT size FROM Messages WHERE id=? AND seq=?";
pub(super) const DELETE_MSG: &str = "DELETE FROM Messages WHERE id=? AND seq=?";
pub(super) const CREATE_SUB: &str = "INSERT INTO Subscriptions (id, subid, proto) VALUES (?, ?, ?)";
pub(super) const UPDATE_SUB: &str = "UPDATE Subscriptions SET proto=? WHERE id=? AND subid=?";
pub(super) const MARK_SUB_DELETED: &str =
    "UPDATE Subscriptions SET deleted=TRUE WHERE id=? AND subid=?";
pub(super) const DELETE_SUB: &str = "DELETE FROM Subscriptions WHERE id=? AND subid=?";
pub(super) const DELETE_SUBS_MARKED: &str = "DELETE FROM Subscriptions WHERE id=? AND deleted=TRUE";
pub(super) const DELETE_SUB_PENDING: &str = "DELETE FROM SubsPending WHERE subid=?";
pub(super) const SUB_UPDATE_LAST_SENT: &str =
    "UPDATE Subscriptions SET lastsent=? WHERE id=? AND subid=?";
pub(super) const SUB_ADD_PENDING: &str =
    "INSERT INTO SubsPending (subid, `row`, seq) VALUES (?, ?, ?)";
pub(super) const SUB_ADD_PENDING_ROW: &str =
    "INSERT INTO SubsPending (subid, `row`, lastsent, pending, acks) VALUES (?, ?, ?, ?, ?)";
pub(super) const SUB_DELETE_PENDING: &str = "DELETE FROM SubsPending WHERE subid=? AND seq=?";
pub(super) const SUB_DELETE_PENDING_ROW: &str = "DELETE FROM SubsPending WHERE subid=? AND `row`=?";
pub(super) const RECOVER_SERVER_INFO: &str =
    "SELECT id, proto, version FROM ServerInfo WHERE uniquerow=1";
pub(super) const RECOVER_CLIENTS: &str = "SELECT id, hbinbox, proto FROM Clients";
pub(super) const RECOVER_MAX_CHANNEL_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM Channels";
pub(super) const RECOVER_MAX_SUB_ID: &str = "SELECT COALESCE(MAX(subid), 0) FROM Subscriptions";
pub(super) const RECOVER_CHANNEL_MAX_SUB_ID: &str =
    "SELECT COALESCE(MAX(subid), 0) FROM Subscriptions WHERE id=?";
pub(super) const RECOVER_CHANNELS: &str =
    "SELECT id, name, maxseq FROM Channels WHERE deleted=FALSE";
pub(super) const RECOVER_CHANNEL_MSGS: &str = "SELECT COUNT(seq), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0), COALESCE(SUM(size), 0), COALESCE(MAX(timestamp), 0) FROM Messages WHERE id=?";
pub(super) const RECOVER_CHANNEL_SUBS: &str =
    "SELECT lastsent, proto FROM Subscriptions WHERE id=? AND deleted=FALSE";
pub(super) const RECOVER_PURGE_SUB_PENDING: &str =
    "DELETE FROM SubsPending WHERE subid=? AND (seq > 0 AND seq<?)";
pub(super) const RECOVER_SUB_PENDING: &str =
    "SELECT `row`, seq, lastsent, pending, acks FROM SubsPending WHERE subid=?";
pub(super) const RECOVER_CHANNEL_LIMITS: &str =
    "SELECT maxmsgs, maxbytes, maxage FROM Channels WHERE id=?";
pub(super) const RECOVER_UPDATE_CHANNEL_LIMITS: &str =
    "UPDATE Channels SET maxmsgs=?, maxbytes=?, maxage=? WHERE id=?";
pub(super) const DELETE_CHANNEL_FAST: &str = "UPDATE Channels SET deleted=true WHERE id=?";
pub(super) const DELETE_CHANNEL_SUB_IDS: &str = "SELECT subid FROM Subscriptions WHERE id=?";
pub(super) const DELETE_CHANNEL_SUBS: &str = "DELETE FROM Subscriptions WHERE id=?";
pub(super) const DELETE_CHANNEL_MSGS: &str = "DELETE FROM Messages WHERE id=?";
pub(super) const DELETE_CHANNEL_ROW: &str = "DELETE FROM Channels WHERE id=?";

/// Every statement, prepared once at startup so that a schema that does not fit
/// (a table or column missing) stops the start with the statement at fault.
pub(super) const ALL: &[&str] = &[
    LOCK_SELECT,
    LOCK_INSERT,
    LOCK_UPDATE,
    HAS_SERVER_INFO,
    UPDATE_SERVER_INFO,
    ADD_SERVER_INFO,
    ADD_CLIENT,
    DELETE_CLIENT,
    ADD_CHANNEL,
    STORE_MSG,
    LOOKUP_MSG,
    UPDATE_CHANNEL_MAX_SEQ,
    GET_SIZE_OF_MSG,
    DELETE_MSG,
    CREATE_SUB,
    UPDATE_SUB,
    MARK_SUB_DELETED,
    DELETE_SUB,
    DELETE_SUBS_MARKED,
    DELETE_SUB_PENDING,
    SUB_UPDATE_LAST_SENT,
    SUB_ADD_PENDING,
    SUB_ADD_PENDING_ROW,
    SUB_DELETE_PENDING,
    SUB_DELETE_PENDING_ROW,
    RECOVER_SERVER_INFO,
    RECOVER_CLIENTS,
    RECOVER_MAX_CHANNEL_ID,
    RECOVER_MAX_SUB_ID,
    RECOVER_CHANNEL_MAX_SUB_ID,
    RECOVER_CHANNELS,
    RECOVER_CHANNEL_MSGS,
    RECOVER_CHANNEL_SUBS,
    RECOVER_PURGE_SUB_PENDING,
    RECOVER_SUB_PENDING,
    RECOVER_CHANNEL_LIMITS,
    RECOVER_UPDATE_CHANNEL_LIMITS,
    DELETE_CHANNEL_FAST,
    DELETE_CHANNEL_SUB_IDS,
    DELETE_CHANNEL_SUBS,
    DELETE_CHANNEL_MSGS,
    DELETE_CHANNEL_ROW,
];
