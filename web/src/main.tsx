import "./style.css";

import { render } from "preact";

import { Controller } from "./app/controller";
import { App } from "./ui/App";
import { applyTheme } from "./ui/Settings";

applyTheme();
const controller = new Controller();
controller.boot();
const root = document.getElementById("app");
if (root) render(<App controller={controller} />, root);
