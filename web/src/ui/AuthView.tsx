/** Logging in and registering: the only view before a session exists. */

import { useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import { LinkError } from "../app/link";

export function AuthView({ controller }: { controller: Controller }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const min = controller.state.server.value?.limits.password;
  const clear = controller.needsClearConsent;

  const submit = async (e: SubmitEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      // The box is required, so the form is sent only once it is ticked.
      if (clear) controller.allowInClear();
      await controller.signIn(user.trim(), password, mode === "register");
    } catch (err) {
      setError(err instanceof LinkError || err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="auth">
      <h1>BaatKaro</h1>
      <div class="tabs" role="tablist" aria-label="Log in or register">
        <button role="tab" aria-selected={mode === "login"} onClick={() => setMode("login")} type="button">
          Log in
        </button>
        <button role="tab" aria-selected={mode === "register"} onClick={() => setMode("register")} type="button">
          Register
        </button>
      </div>
      <form onSubmit={submit} aria-label={mode === "login" ? "Log in" : "Register"}>
        <label>
          User name
          <input
            name="user"
            autoComplete="username"
            required
            maxLength={32}
            pattern="[a-z][a-z0-9_.\-]{0,31}"
            title="lowercase letters, digits, - _ . only, starting with a letter, at most 32"
            value={user}
            onInput={(e) => setUser(e.currentTarget.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === "login" ? "current-password" : "new-password"}
            required
            minLength={mode === "register" ? min : undefined}
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {clear ? (
          <label class="consent">
            <input type="checkbox" name="clear" required />
            This page reaches {location.host} without encryption: anyone on the network between
            you can read your password, your session token and your messages. Send them anyway.
          </label>
        ) : null}
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy}>
          {mode === "login" ? "Log in" : "Create account"}
        </button>
      </form>
    </main>
  );
}
