import { render } from "preact";
import "./style.css";

function App() {
  return <main><h1>BaatKaro</h1></main>;
}

const root = document.getElementById("app");
if (root) render(<App />, root);
