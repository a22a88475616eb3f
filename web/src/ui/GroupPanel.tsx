/**
 * A group's people and settings: members with roles and presence (live), what
 * each may do to the others, pending requests, bans, invitations, the join rule,
 * ownership hand-over, leaving and deleting. Only what the rules let the user do is
 * offered; a refusal from the server is shown as it comes.
 */

import { useEffect, useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import type { Member } from "../app/state";
import { type Name, type Role, type JoinRule } from "../proto/types";
import { time } from "./format";

/** Whether `actor` may act on `target` (kick, ban): owners on all, admins on members. */
function outranks(actor: Role | undefined, target: Role): boolean {
  return actor === "owner" ? target !== "owner" : actor === "admin" && target === "member";
}

export function GroupPanel({ controller, group }: { controller: Controller; group: Name }) {
  const s = controller.state;
  const me = s.me.value;
  const g = s.group(group);
  const role = s.roleIn(group);
  const members = s.members.value.get(group) ?? [];
  const requests = s.requests.value.get(group) ?? [];
  const [bans, setBans] = useState<{ user: Name; by: Name }[] | undefined>();
  const [invitee, setInvitee] = useState("");
  const [menu, setMenu] = useState<Name | undefined>();
  const manage = role === "owner" || role === "admin";
  const act = controller.groupAction.bind(controller);

  useEffect(() => {
    setBans(undefined);
    setMenu(undefined);
  }, [group]);

  const loadBans = async () => {
    const done = await controller.run({ verb: "BANS", group }).catch(() => undefined);
    if (done) setBans(done.items.flatMap((i) => (i.verb === "BAN" ? [{ user: i.user, by: i.by }] : [])));
  };

  const memberRow = (m: Member) => (
    <li key={m.user} class="member">
      <span class={`dot ${m.presence}`} aria-label={m.presence} role="img" />
      <span class="who">{m.user}</span>
      <span class="role">{m.role}</span>
      {m.user !== me && outranks(role, m.role) ? (
        <span class="actions">
          <button
            type="button"
            aria-label={`actions for ${m.user}`}
            aria-haspopup="menu"
            aria-expanded={menu === m.user}
            onClick={() => setMenu(menu === m.user ? undefined : m.user)}
          >
            ⋯
          </button>
          {menu === m.user ? (
            <div role="menu" aria-label={`actions for ${m.user}`} onClick={() => setMenu(undefined)}>
              {role === "owner" && m.role === "member" ? (
                <button type="button" role="menuitem" onClick={() => void act({ verb: "PROMOTE", group, user: m.user })}>
                  Make admin
                </button>
              ) : null}
              {role === "owner" && m.role === "admin" ? (
                <button type="button" role="menuitem" onClick={() => void act({ verb: "DEMOTE", group, user: m.user })}>
                  Make member
                </button>
              ) : null}
              {role === "owner" ? (
                <button type="button" role="menuitem" onClick={() => void act({ verb: "TRANSFER", group, user: m.user })}>
                  Offer ownership
                </button>
              ) : null}
              <button type="button" role="menuitem" onClick={() => void act({ verb: "KICK", group, user: m.user })}>
                Remove
              </button>
              <button
                type="button"
                role="menuitem"
                class="danger"
                onClick={() => void act({ verb: "KICK", group, user: m.user, ban: true })}
              >
                Remove and ban
              </button>
            </div>
          ) : null}
        </span>
      ) : null}
    </li>
  );

  return (
    <aside class="panel" aria-label={`${group} details`}>
      <h2>#{group}</h2>
      {g?.offer ? (
        g.offer === me ? (
          <div class="offer">
            <p>You are offered the ownership of #{group}.</p>
            <button type="button" onClick={() => void act({ verb: "TRANSFER-ACCEPT", group })}>
              Accept ownership
            </button>
          </div>
        ) : role === "owner" ? (
          <div class="offer">
            <p>Ownership offered to {g.offer}.</p>
            <button type="button" onClick={() => void act({ verb: "TRANSFER-CANCEL", group })}>
              Cancel the offer
            </button>
          </div>
        ) : null
      ) : null}
      <h3>Members ({members.length})</h3>
      <ul class="members">{members.map(memberRow)}</ul>
      {manage ? (
        <>
          <h3>Requests ({requests.length})</h3>
          {requests.length === 0 ? <p class="muted">No one is waiting.</p> : null}
          <ul class="requests">
            {requests.map((r) => (
              <li key={r.user}>
                <span class="who">{r.user}</span> <time>{time(r.time)}</time>
                {r.reason ? <q>{r.reason}</q> : null}
                <button type="button" onClick={() => void act({ verb: "APPROVE", group, user: r.user })}>
                  Approve
                </button>
                <button type="button" onClick={() => void act({ verb: "REJECT", group, user: r.user })}>
                  Reject
                </button>
              </li>
            ))}
          </ul>
          <form
            class="mini"
            aria-label="Invite someone"
            onSubmit={async (e) => {
              e.preventDefault();
              if (await act({ verb: "INVITE", group, user: invitee.trim() })) setInvitee("");
            }}
          >
            <label>
              Invite
              <input required maxLength={32} value={invitee} onInput={(e) => setInvitee(e.currentTarget.value)} />
            </label>
            <button type="submit">Invite</button>
          </form>
          <h3>Bans</h3>
          {bans === undefined ? (
            <button type="button" onClick={() => void loadBans()}>
              Show bans
            </button>
          ) : bans.length === 0 ? (
            <p class="muted">No one is banned.</p>
          ) : (
            <ul>
              {bans.map((b) => (
                <li key={b.user}>
                  {b.user} <span class="muted">by {b.by}</span>{" "}
                  <button
                    type="button"
                    onClick={async () => {
                      if (await act({ verb: "UNBAN", group, user: b.user })) await loadBans();
                    }}
                  >
                    Unban
                  </button>
                </li>
              ))}
            </ul>
          )}
          <label class="rule">
            Who may join
            <select
              value={g?.rule}
              onChange={(e) => void act({ verb: "RULE", group, rule: e.currentTarget.value as JoinRule })}
            >
              <option value="approval">on approval</option>
              <option value="open">anyone</option>
              <option value="invite">by invitation</option>
            </select>
          </label>
        </>
      ) : null}
      <div class="leave">
        {role !== "owner" ? (
          <button type="button" onClick={() => void act({ verb: "LEAVE", group })}>
            Leave #{group}
          </button>
        ) : (
          <button
            type="button"
            class="danger"
            onClick={() => {
              if (confirm(`Delete #${group} and its whole history for everyone?`)) void act({ verb: "DELETE", group });
            }}
          >
            Delete #{group}
          </button>
        )}
      </div>
    </aside>
  );
}
