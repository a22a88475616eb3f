/**
 * The conversations: the user's groups (with unread counts), invitations and
 * pending requests, private conversations, and the forms to create a group, ask to
 * join one and write to a user.
 */

import { useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import { isName } from "../proto/syntax";
import type { Conv, JoinRule } from "../proto/types";

/** The rule of names (SPEC.md 2.4), in words. */
const NAME_RULE = "lowercase letters, digits, - _ . only, starting with a letter, at most 32";

export function Sidebar({ controller, onOpen }: { controller: Controller; onOpen: () => void }) {
  const s = controller.state;
  void s.revision.value;
  const current = s.current.value;
  const groups = s.groups.value;
  const readable = groups.filter((g) => g.membership === "owner" || g.membership === "admin" || g.membership === "member");
  const invited = groups.filter((g) => g.membership === "invited");
  const requested = groups.filter((g) => g.membership === "requested");
  const privates = [...s.conversations.keys()].filter((c) => c.startsWith("@")).sort();

  const open = (conv: Conv) => {
    void controller.select(conv);
    onOpen();
  };
  const item = (conv: Conv, label: string) => {
    const c = s.conversations.get(conv);
    const unread = c?.unread ?? 0;
    return (
      <li key={conv}>
        <button
          type="button"
          class={conv === current ? "conv active" : "conv"}
          aria-current={conv === current ? "page" : undefined}
          onClick={() => open(conv)}
        >
          <span>{label}</span>
          {unread > 0 ? (
            <span class="badge" aria-label={`${unread}${c?.more ? " or more" : ""} unread`}>
              {c?.more ? `${unread}+` : unread}
            </span>
          ) : null}
        </button>
      </li>
    );
  };

  return (
    <nav class="sidebar" aria-label="Conversations">
      <h2>Groups</h2>
      <ul>{readable.map((g) => item(`#${g.name}`, `#${g.name}`))}</ul>
      {readable.length === 0 ? <p class="muted">No groups yet: create one or join one below.</p> : null}
      {invited.length > 0 ? (
        <>
          <h2>Invitations</h2>
          <ul>
            {invited.map((g) => (
              <li key={g.name} class="invite">
                <span>#{g.name}</span>
                <button type="button" onClick={() => void controller.groupAction({ verb: "ACCEPT", group: g.name })}>
                  Accept
                </button>
                <button type="button" onClick={() => void controller.groupAction({ verb: "DECLINE", group: g.name })}>
                  Decline
                </button>
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {requested.length > 0 ? (
        <>
          <h2>Asked to join</h2>
          <ul>
            {requested.map((g) => (
              <li key={g.name} class="muted">
                #{g.name} (waiting)
              </li>
            ))}
          </ul>
        </>
      ) : null}
      <h2>Private</h2>
      <ul>{privates.map((c) => item(c, c))}</ul>
      <NewGroup controller={controller} />
      <JoinGroup controller={controller} />
      <WriteTo controller={controller} onOpen={onOpen} />
    </nav>
  );
}

function NewGroup({ controller }: { controller: Controller }) {
  const [name, setName] = useState("");
  const [rule, setRule] = useState<JoinRule>("approval");
  return (
    <form
      class="mini"
      aria-label="Create a group"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await controller.create(name.trim(), rule)) setName("");
      }}
    >
      <h2>New group</h2>
      <label>
        Name
        <input required maxLength={32} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Who may join
        <select value={rule} onChange={(e) => setRule(e.currentTarget.value as JoinRule)}>
          <option value="approval">on approval</option>
          <option value="open">anyone</option>
          <option value="invite">by invitation</option>
        </select>
      </label>
      <button type="submit">Create</button>
    </form>
  );
}

function JoinGroup({ controller }: { controller: Controller }) {
  const [name, setName] = useState("");
  const [reason, setReason] = useState("");
  return (
    <form
      class="mini"
      aria-label="Join a group"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await controller.join(name.trim().replace(/^#/, ""), reason.trim())) {
          setName("");
          setReason("");
        }
      }}
    >
      <h2>Join a group</h2>
      <label>
        Group
        <input required maxLength={33} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Why (optional)
        <input value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      </label>
      <button type="submit">Ask to join</button>
    </form>
  );
}

function WriteTo({ controller, onOpen }: { controller: Controller; onOpen: () => void }) {
  const [name, setName] = useState("");
  return (
    <form
      class="mini"
      aria-label="Write to a user"
      onSubmit={(e) => {
        e.preventDefault();
        const user = name.trim().replace(/^@/, "");
        if (!isName(user)) {
          controller.state.notify(`${JSON.stringify(user)} is not a user name: ${NAME_RULE}`, "error");
          return;
        }
        void controller.select(`@${user}`);
        setName("");
        onOpen();
      }}
    >
      <h2>Write to a user</h2>
      <label>
        User
        <input
          required
          maxLength={33}
          pattern="@?[a-z][a-z0-9_.\-]{0,31}"
          title={NAME_RULE}
          value={name}
          onInput={(e) => setName(e.currentTarget.value)}
        />
      </label>
      <button type="submit">Open</button>
    </form>
  );
}
