/**
 * The account: change the password, see and end sessions, desktop notifications,
 * the theme, logging out.
 */

import { useEffect, useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import { time } from "./format";

interface TokenRow {
  readonly token: number;
  readonly label: string;
  readonly used: number;
  readonly address: string;
}

/** The theme: the system's, or one chosen here and kept. */
export function applyTheme(theme: string | null = localStorage.getItem("baatkaro.theme")): void {
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

export function Settings({ controller, onClose }: { controller: Controller; onClose: () => void }) {
  const [old, setOld] = useState("");
  const [next, setNext] = useState("");
  const [tokens, setTokens] = useState<TokenRow[] | undefined>();
  const [theme, setTheme] = useState(localStorage.getItem("baatkaro.theme") ?? "system");
  const [notifications, setNotifications] = useState(
    typeof Notification === "undefined" ? "unsupported" : Notification.permission,
  );

  const loadTokens = async () => {
    const done = await controller.run({ verb: "TOKENS" }).catch(() => undefined);
    if (done) {
      setTokens(
        done.items.flatMap((i) =>
          i.verb === "TOKEN" ? [{ token: i.token, label: i.label, used: i.used, address: i.address }] : [],
        ),
      );
    }
  };
  useEffect(() => void loadTokens(), []);

  return (
    <main class="settings" aria-label="Settings">
      <header class="chat-head">
        <h2>Settings</h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </header>
      <form
        class="mini"
        aria-label="Change password"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await controller.act({ verb: "PASSWORD", old, new: next })) {
            setOld("");
            setNext("");
            controller.state.notify("password changed");
          }
        }}
      >
        <h3>Password</h3>
        <label>
          Current password
          <input type="password" autoComplete="current-password" required value={old} onInput={(e) => setOld(e.currentTarget.value)} />
        </label>
        <label>
          New password
          <input type="password" autoComplete="new-password" required value={next} onInput={(e) => setNext(e.currentTarget.value)} />
        </label>
        <button type="submit">Change password</button>
      </form>
      <h3>Sessions</h3>
      <ul class="tokens">
        {(tokens ?? []).map((t) => (
          <li key={t.token}>
            <span>{t.label || `session ${t.token}`}</span>{" "}
            <span class="muted">
              last used {time(t.used)} {t.address ? `from ${t.address}` : ""}
            </span>{" "}
            {t.token === controller.link.token ? (
              <strong>this browser</strong>
            ) : (
              <button
                type="button"
                aria-label={`End session ${t.label || t.token}, last used ${time(t.used)}`}
                onClick={async () => {
                  if (await controller.act({ verb: "REVOKE", token: t.token })) await loadTokens();
                }}
              >
                End session
              </button>
            )}
          </li>
        ))}
      </ul>
      <h3>Notifications</h3>
      {notifications === "granted" ? (
        <p>Desktop notifications are on for mentions and private messages while this tab is hidden.</p>
      ) : notifications === "unsupported" ? (
        <p class="muted">This browser has no desktop notifications.</p>
      ) : (
        <button
          type="button"
          onClick={async () => setNotifications(await Notification.requestPermission())}
        >
          Turn on desktop notifications
        </button>
      )}
      <h3>Theme</h3>
      <label>
        Theme
        <select
          value={theme}
          onChange={(e) => {
            const v = e.currentTarget.value;
            setTheme(v);
            if (v === "system") localStorage.removeItem("baatkaro.theme");
            else localStorage.setItem("baatkaro.theme", v);
            applyTheme();
          }}
        >
          <option value="system">as the system</option>
          <option value="light">light</option>
          <option value="dark">dark</option>
        </select>
      </label>
      <h3>Log out</h3>
      <button type="button" onClick={() => void controller.logout()}>
        Log out
      </button>
    </main>
  );
}
