// anywidget entry point of every fourd_widgets view (bundled to fourd_widgets/static/explorer.js).
import { renderView } from "./view.js";

export default { render: renderView };
