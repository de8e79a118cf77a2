// Vietnamese and English labels. Static labels carry `data-i18n="key"`
// (or `data-i18n-title`, `data-i18n-placeholder`); dynamic ones call t().
// The choice is kept in localStorage and applies to every screen.

const DICT = {
  en: {
    'app.title': 'Da Nang IOC',
    'screen.wall': 'City wall',
    'screen.dispatch': 'Dispatcher console',
    'screen.district': 'District centre',
    'screen.login': 'Sign in',
    'hdr.seq': 'seq',
    'hdr.feed': 'feed',
    'hdr.logout': 'log out',
    'hdr.logout.title': 'Forget the token on this screen',
    'lang.switch': 'Tiếng Việt',
    'status.live': 'LIVE',
    'status.stale': 'STALE',
    'status.reconnecting': 'RECONNECTING',
    'status.connecting': 'CONNECTING',
    'status.notoken': 'NO TOKEN',
    'banner.stale': 'STALE — picture may be out of date',
    'banner.stale.server': 'The server lost its data feed (broker unavailable). Showing the last known picture.',
    'banner.stale.gap': 'Missed events detected; reloading the full picture…',
    'banner.stale.quiet': 'No data received for {s} s (last at {at}).',
    'banner.notoken': 'NOT CONNECTED — operator token needed',
    'banner.connecting': 'CONNECTING…',
    'banner.loading': 'CONNECTED — loading the picture…',
    'banner.reconnecting': 'RECONNECTING — live feed lost',
    'banner.unreachable': 'RECONNECTING — cannot reach the server',
    'banner.since': 'since {at}',
    'banner.retry': 'retry in {s} s',
    'banner.retrying': 'retrying…',
    'banner.lastpicture': 'showing the last known picture',
    'login.title': 'Operator sign-in',
    'login.help': 'Paste your operator token (printed by ioc demo, or minted with ioc token --role …). The role in the token opens your screen: IOC → wall, dispatcher → console, district → district screen.',
    'login.submit': 'Sign in',
    'login.empty': 'Paste a token first.',
    'login.notjwt': 'This does not look like a token (three dot-separated parts).',
    'login.expired': 'Token expired at {at}.',
    'login.rejected': 'The server rejected this token (401). Paste a valid one.',
    'login.norole': 'This token has no known role (ioc, dispatcher or district).',
    'login.wrongscreen': 'Your role ({role}) cannot open this screen; opening yours.',
    'kpi.open': 'open incidents',
    'kpi.calls15': 'calls, last 15 min',
    'kpi.scene.median': 'call→scene median today',
    'kpi.scene.p90': 'call→scene p90 today',
    'kpi.units.caption': 'units available / total by kind',
    'kpi.scene.n': '{n} arrivals',
    'list.incidents': 'Open incidents',
    'list.queue': 'Incident queue',
    'list.alerts': 'Alerts',
    'list.units': 'Units',
    'list.none.incidents': 'No open incidents.',
    'list.none.alerts': 'No alerts.',
    'list.none.units': 'No units.',
    'col.p': 'P',
    'col.what': 'category · district',
    'col.age': 'age',
    'col.deadline': 'assign by',
    'col.calls': 'calls',
    'col.units': 'units',
    'legend.dimmed': 'dimmed = not available',
    'legend.hotspot': 'glow = calls in the last 15 min',
    'map.fit': 'fit',
    'map.fit.title': 'Fit the map (F)',
    'map.zones.error': 'District map unavailable — GET /api/zones: {err}. Incidents and units are still shown. Retrying every {s} s.',
    'map.retry': 'retry now',
    'map.offshore': '(offshore)',
    'detail.id': 'id',
    'detail.status': 'status',
    'detail.source': 'source',
    'detail.opened': 'opened',
    'detail.age': 'age',
    'detail.calls': 'calls',
    'detail.caller': 'caller',
    'detail.note': 'note',
    'detail.assignby': 'assign by',
    'detail.assigned': 'assigned',
    'detail.none': 'none',
    'detail.closed': 'This incident is closed.',
    'detail.in': 'in {t}',
    'detail.overdue': 'OVERDUE {t}',
    'detail.deselect': 'Deselect (Esc)',
    'rec.title': 'Recommended units (by ETA)',
    'rec.none': 'No recommendation received yet.',
    'rec.nocand': 'No candidates.',
    'rec.needs': 'needs {what}',
    'rec.auto': 'auto-assigned (P1)',
    'rec.unfilled': 'no available unit: {what}',
    'rec.assign': 'Assign',
    'rec.assigned': 'assigned',
    'rec.sending': 'sending…',
    'rec.keys': 'Keys: ↑/↓ select incident · 1–9 assign candidate · Enter assign first · Esc deselect',
    'assign.sent': 'Assignment of {unit} to {inc} sent.',
    'assign.failed': 'Assignment failed: {err}',
    'dispatch.select': 'Select an incident in the queue (↑/↓ or click) to see recommended units.',
    'board.title': 'Unit status board',
    'district.title': 'District',
    'district.choose': 'district',
    'district.coverage': 'Coverage',
    'district.coverage.ok': 'covered',
    'district.coverage.gap': 'GAP',
    'district.only': 'Only {name} is shown: other districts are not sent to this screen.',
    'alert.ack': 'Acknowledge',
    'alert.acked': 'acknowledged',
    'alert.ack.sent': 'Acknowledgement sent.',
    'alert.ack.failed': 'Acknowledgement failed: {err}',
    'outside': 'outside zones',
    'cmd.rejected': 'Command {op} rejected{inc}: {reason}',
    'server.error': 'Server: {code}{msg}',
    'resync': '{ch}: {why}; reloading snapshot',
  },
  vi: {
    'app.title': 'IOC Đà Nẵng',
    'screen.wall': 'Màn hình tổng',
    'screen.dispatch': 'Bàn điều phối',
    'screen.district': 'Trung tâm quận',
    'screen.login': 'Đăng nhập',
    'hdr.seq': 'seq',
    'hdr.feed': 'nguồn',
    'hdr.logout': 'đăng xuất',
    'hdr.logout.title': 'Xóa mã truy cập khỏi màn hình này',
    'lang.switch': 'English',
    'status.live': 'TRỰC TIẾP',
    'status.stale': 'CŨ',
    'status.reconnecting': 'ĐANG KẾT NỐI LẠI',
    'status.connecting': 'ĐANG KẾT NỐI',
    'status.notoken': 'CHƯA ĐĂNG NHẬP',
    'banner.stale': 'DỮ LIỆU CŨ — hình ảnh có thể không còn đúng',
    'banner.stale.server': 'Máy chủ mất nguồn dữ liệu (broker không truy cập được). Đang hiển thị hình ảnh cuối cùng.',
    'banner.stale.gap': 'Phát hiện thiếu sự kiện; đang tải lại toàn bộ…',
    'banner.stale.quiet': 'Không nhận dữ liệu trong {s} giây (lần cuối lúc {at}).',
    'banner.notoken': 'CHƯA KẾT NỐI — cần mã truy cập của điều hành viên',
    'banner.connecting': 'ĐANG KẾT NỐI…',
    'banner.loading': 'ĐÃ KẾT NỐI — đang tải dữ liệu…',
    'banner.reconnecting': 'ĐANG KẾT NỐI LẠI — mất luồng dữ liệu trực tiếp',
    'banner.unreachable': 'ĐANG KẾT NỐI LẠI — không truy cập được máy chủ',
    'banner.since': 'từ {at}',
    'banner.retry': 'thử lại sau {s} giây',
    'banner.retrying': 'đang thử lại…',
    'banner.lastpicture': 'đang hiển thị hình ảnh cuối cùng',
    'login.title': 'Đăng nhập điều hành viên',
    'login.help': 'Dán mã truy cập (in ra bởi ioc demo, hoặc tạo bằng ioc token --role …). Vai trò trong mã quyết định màn hình: IOC → màn hình tổng, điều phối → bàn điều phối, quận → màn hình quận.',
    'login.submit': 'Đăng nhập',
    'login.empty': 'Hãy dán mã truy cập trước.',
    'login.notjwt': 'Đây không phải mã truy cập (ba phần cách nhau bởi dấu chấm).',
    'login.expired': 'Mã đã hết hạn lúc {at}.',
    'login.rejected': 'Máy chủ từ chối mã này (401). Hãy dán mã hợp lệ.',
    'login.norole': 'Mã này không có vai trò hợp lệ (ioc, dispatcher hoặc district).',
    'login.wrongscreen': 'Vai trò ({role}) không mở được màn hình này; chuyển sang màn hình của bạn.',
    'kpi.open': 'sự cố đang mở',
    'kpi.calls15': 'cuộc gọi, 15 phút qua',
    'kpi.scene.median': 'gọi→hiện trường, trung vị hôm nay',
    'kpi.scene.p90': 'gọi→hiện trường, p90 hôm nay',
    'kpi.units.caption': 'đơn vị sẵn sàng / tổng theo loại',
    'kpi.scene.n': '{n} lượt đến',
    'list.incidents': 'Sự cố đang mở',
    'list.queue': 'Hàng đợi sự cố',
    'list.alerts': 'Cảnh báo',
    'list.units': 'Đơn vị',
    'list.none.incidents': 'Không có sự cố đang mở.',
    'list.none.alerts': 'Không có cảnh báo.',
    'list.none.units': 'Không có đơn vị.',
    'col.p': 'ƯT',
    'col.what': 'loại · quận',
    'col.age': 'thời gian',
    'col.deadline': 'hạn điều',
    'col.calls': 'cuộc gọi',
    'col.units': 'đơn vị',
    'legend.dimmed': 'mờ = không sẵn sàng',
    'legend.hotspot': 'vùng sáng = cuộc gọi 15 phút qua',
    'map.fit': 'vừa khung',
    'map.fit.title': 'Vừa khung bản đồ (F)',
    'map.zones.error': 'Không có bản đồ quận — GET /api/zones: {err}. Sự cố và đơn vị vẫn hiển thị. Thử lại mỗi {s} giây.',
    'map.retry': 'thử lại',
    'map.offshore': '(ngoài khơi)',
    'detail.id': 'mã',
    'detail.status': 'trạng thái',
    'detail.source': 'nguồn',
    'detail.opened': 'mở lúc',
    'detail.age': 'thời gian',
    'detail.calls': 'cuộc gọi',
    'detail.caller': 'số gọi',
    'detail.note': 'ghi chú',
    'detail.assignby': 'hạn điều',
    'detail.assigned': 'đã điều',
    'detail.none': 'chưa có',
    'detail.closed': 'Sự cố này đã đóng.',
    'detail.in': 'còn {t}',
    'detail.overdue': 'QUÁ HẠN {t}',
    'detail.deselect': 'Bỏ chọn (Esc)',
    'rec.title': 'Đơn vị đề xuất (theo thời gian đến)',
    'rec.none': 'Chưa có đề xuất.',
    'rec.nocand': 'Không có đơn vị phù hợp.',
    'rec.needs': 'cần {what}',
    'rec.auto': 'tự động điều (ƯT1)',
    'rec.unfilled': 'không có đơn vị sẵn sàng: {what}',
    'rec.assign': 'Điều',
    'rec.assigned': 'đã điều',
    'rec.sending': 'đang gửi…',
    'rec.keys': 'Phím: ↑/↓ chọn sự cố · 1–9 điều đơn vị · Enter điều đơn vị đầu · Esc bỏ chọn',
    'assign.sent': 'Đã gửi lệnh điều {unit} đến {inc}.',
    'assign.failed': 'Điều đơn vị thất bại: {err}',
    'dispatch.select': 'Chọn một sự cố trong hàng đợi (↑/↓ hoặc bấm) để xem đơn vị đề xuất.',
    'board.title': 'Bảng trạng thái đơn vị',
    'district.title': 'Quận',
    'district.choose': 'quận',
    'district.coverage': 'Độ phủ',
    'district.coverage.ok': 'đủ',
    'district.coverage.gap': 'THIẾU',
    'district.only': 'Chỉ hiển thị {name}: dữ liệu quận khác không được gửi tới màn hình này.',
    'alert.ack': 'Xác nhận',
    'alert.acked': 'đã xác nhận',
    'alert.ack.sent': 'Đã gửi xác nhận.',
    'alert.ack.failed': 'Xác nhận thất bại: {err}',
    'outside': 'ngoài các quận',
    'cmd.rejected': 'Lệnh {op} bị từ chối{inc}: {reason}',
    'server.error': 'Máy chủ: {code}{msg}',
    'resync': '{ch}: {why}; đang tải lại',
  },
};

// Enum labels: categories, unit kinds, unit and incident statuses, alert kinds.
const ENUMS = {
  en: {
    medical: 'medical', fire: 'fire', traffic_accident: 'traffic accident', crime: 'crime', flood: 'flood',
    rescue: 'rescue', other: 'other',
    ambulance: 'ambulance', fire_engine: 'fire engine', police: 'police',
    available: 'available', dispatched: 'dispatched', en_route: 'en route', on_scene: 'on scene',
    returning: 'returning', out_of_service: 'out of service', open: 'open', closed: 'closed',
    incident_opened: 'incident opened', unassigned_deadline: 'unassigned past deadline', stale_gps: 'GPS stale',
    call_surge: 'call surge', coverage_gap: 'coverage gap', raised: 'raised', acknowledged: 'acknowledged', cleared: 'cleared',
    ioc: 'IOC', dispatcher: 'dispatcher', district: 'district',
  },
  vi: {
    medical: 'y tế', fire: 'cháy', traffic_accident: 'tai nạn giao thông', crime: 'an ninh', flood: 'ngập lụt',
    rescue: 'cứu hộ', other: 'khác',
    ambulance: 'cứu thương', fire_engine: 'xe chữa cháy', police: 'cảnh sát',
    available: 'sẵn sàng', dispatched: 'đã điều', en_route: 'đang đến', on_scene: 'tại hiện trường',
    returning: 'đang về', out_of_service: 'ngừng hoạt động', open: 'mở', closed: 'đã đóng',
    incident_opened: 'sự cố mới', unassigned_deadline: 'quá hạn chưa điều', stale_gps: 'mất GPS',
    call_surge: 'cuộc gọi tăng đột biến', coverage_gap: 'thiếu độ phủ', raised: 'mới', acknowledged: 'đã xác nhận', cleared: 'đã xóa',
    ioc: 'IOC', dispatcher: 'điều phối', district: 'quận',
  },
};

const KEY = 'ioc.lang';
const listeners = [];

function initialLang() {
  try {
    const saved = localStorage.getItem(KEY);
    if (saved === 'en' || saved === 'vi') return saved;
  } catch (_) { /* storage disabled */ }
  const nav = (navigator.language || 'en').toLowerCase();
  return nav.startsWith('vi') ? 'vi' : 'en';
}

let lang = initialLang();

export const getLang = () => lang;

/** Label for `key` in the current language, `{name}` placeholders filled from vars. */
export function t(key, vars) {
  let s = (DICT[lang] && DICT[lang][key]) || DICT.en[key] || key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m));
  return s;
}

/** Label of an enum value (category, kind, status, alert kind, role). */
export function label(value) {
  if (value === null || value === undefined || value === '') return '—';
  return (ENUMS[lang] && ENUMS[lang][value]) || ENUMS.en[value] || String(value).replace(/_/g, ' ');
}

/** Fills every `[data-i18n]` (text), `[data-i18n-title]` and `[data-i18n-placeholder]` under root. */
export function applyI18n(root = document) {
  document.documentElement.lang = lang;
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of root.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle);
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
  for (const e of root.querySelectorAll('[data-label]')) e.textContent = label(e.dataset.label);
}

export function setLang(next) {
  if (next !== 'en' && next !== 'vi') return;
  lang = next;
  try { localStorage.setItem(KEY, next); } catch (_) { /* storage disabled */ }
  applyI18n();
  for (const f of listeners) f(lang);
}

export const onLangChange = (f) => listeners.push(f);

/** Wires a button (`#lang`) that toggles between Vietnamese and English. */
export function wireLangButton(button) {
  if (!button) return;
  const paint = () => {
    button.textContent = t('lang.switch');
    button.dataset.lang = lang;
  };
  button.addEventListener('click', () => setLang(lang === 'vi' ? 'en' : 'vi'));
  onLangChange(paint);
  paint();
}
