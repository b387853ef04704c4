//! Render functions: the [`Screen`] view-model into ratatui widgets. No decisions are made
//! here beyond mapping roles to the palette and view-model widths to constraints; all text
//! arrives formatted and sanitized from `viewmodel`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline, Table, Wrap};

use crate::tui::config::Palette;
use crate::tui::viewmodel::{
    Areas, Body, Cell, GraphVm, HelpVm, Line, Role, Screen, TableVm, Width, help_rows,
};

fn style(role: Role, p: &Palette) -> Style {
    match role {
        Role::Normal => Style::new(),
        Role::Accent => p.accent,
        Role::Header => p.header,
        Role::Plaintext => p.plaintext,
        Role::Encrypted => p.encrypted,
        Role::Denied => p.denied,
        Role::Allowed => p.allowed,
        Role::Warn => p.warn,
        Role::Dim => p.dim,
        Role::Valid => p.valid,
        Role::Invalid => p.invalid,
        Role::High => p.high,
        Role::Medium => p.medium,
        Role::Low => p.low,
    }
}

fn span(cell: &Cell, p: &Palette) -> Span<'static> {
    Span::styled(cell.text.clone(), style(cell.role, p))
}

fn line(cells: &Line, p: &Palette) -> TextLine<'static> {
    TextLine::from(cells.iter().map(|c| span(c, p)).collect::<Vec<_>>())
}

fn constraint(w: Width) -> Constraint {
    match w {
        Width::Fixed(n) => Constraint::Length(n),
        Width::Fill(n) => Constraint::Fill(n),
    }
}

fn table(frame: &mut Frame, area: Rect, t: &TableVm, p: &Palette) {
    if area.height == 0 {
        return;
    }
    let header = Row::new(t.headers.iter().map(|(h, _)| h.clone())).style(p.header);
    if t.rows.is_empty() {
        frame.render_widget(
            Table::new(
                Vec::<Row>::new(),
                t.headers.iter().map(|(_, w)| constraint(*w)),
            )
            .header(header),
            area,
        );
        let msg = Rect::new(
            area.x,
            area.y + 1.min(area.height),
            area.width,
            area.height.saturating_sub(1),
        );
        frame.render_widget(Paragraph::new(Span::styled(t.empty.clone(), p.dim)), msg);
        return;
    }
    let rows = t.rows.iter().enumerate().map(|(i, r)| {
        let row = Row::new(r.iter().map(|c| ratatui::widgets::Cell::from(span(c, p))));
        if t.selected == Some(i) {
            row.style(p.selected)
        } else {
            row
        }
    });
    let widget = Table::new(rows, t.headers.iter().map(|(_, w)| constraint(*w)))
        .header(header)
        .column_spacing(1);
    frame.render_widget(widget, area);
}

fn graph(frame: &mut Frame, area: Rect, g: &GraphVm, p: &Palette) {
    if area.height < 2 {
        return;
    }
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(" neighbours: in → workload → out ", p.header));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if g.center.is_empty() {
        return;
    }
    let [left, mid, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let ins: Vec<TextLine> = g
        .ins
        .iter()
        .map(|l| {
            let mut spans: Vec<Span> = l.iter().map(|c| span(c, p)).collect();
            spans.push(Span::raw(" ─►"));
            TextLine::from(spans).right_aligned()
        })
        .collect();
    let outs: Vec<TextLine> = g
        .outs
        .iter()
        .map(|l| {
            let mut spans = vec![Span::raw("─► ")];
            spans.extend(l.iter().map(|c| span(c, p)));
            TextLine::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(ins), left);
    let center =
        Paragraph::new(TextLine::from(Span::styled(g.center.clone(), p.accent)).centered())
            .block(Block::default().borders(Borders::ALL))
            .wrap(Wrap { trim: true });
    let h = mid
        .height
        .min(3 + (g.center.chars().count() as u16 / mid.width.max(1)));
    frame.render_widget(center, Rect::new(mid.x, mid.y, mid.width, h));
    frame.render_widget(Paragraph::new(outs), right);
}

fn text(frame: &mut Frame, area: Rect, title: &str, lines: &[Line], scroll: u16, p: &Palette) {
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(format!(" {title} "), p.header));
    let body: Vec<TextLine> = lines.iter().map(|l| line(l, p)).collect();
    frame.render_widget(
        Paragraph::new(body)
            .block(block)
            .scroll((scroll, 0))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// One column, scrolled (lines are kept short enough for 80 columns, so nothing wraps and
/// every line is reachable with j/k/PgDn at any height).
fn help(frame: &mut Frame, area: Rect, vm: &HelpVm, p: &Palette) {
    let w = area.width.saturating_sub(4).min(90);
    let visible = help_rows(area.height);
    let h = (vm.lines.len().min(visible) as u16 + 2).min(area.height);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height.saturating_sub(h)) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    let scroll = usize::from(vm.scroll).min(vm.lines.len().saturating_sub(visible));
    let title = if vm.lines.len() > visible {
        format!(
            " help {}-{}/{} — j/k PgDn scroll, other keys close ",
            scroll + 1,
            (scroll + visible).min(vm.lines.len()),
            vm.lines.len()
        )
    } else {
        " help — any key closes ".to_string()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, p.accent));
    let body: Vec<TextLine> = vm
        .lines
        .iter()
        .skip(scroll)
        .take(visible)
        .map(|l| line(l, p))
        .collect();
    frame.render_widget(Paragraph::new(body).block(block), rect);
}

/// Draws one frame.
pub fn draw(frame: &mut Frame, screen: &Screen, areas: &Areas, p: &Palette) {
    let mut tabs = vec![Span::raw(" ")];
    for (title, active) in &screen.tabs {
        let s = if *active {
            p.accent.add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        tabs.push(Span::styled(title.clone(), s));
        tabs.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(TextLine::from(tabs)), areas.tabs);
    match &screen.body {
        Body::Table(t) => table(frame, areas.table, t, p),
        Body::TableGraph(t, g) => {
            table(frame, areas.table, t, p);
            graph(frame, areas.lower, g, p);
        }
        Body::TableText(t, lines) => {
            table(frame, areas.table, t, p);
            text(frame, areas.lower, "details", lines, 0, p);
        }
        Body::Text {
            title,
            lines,
            scroll,
        } => text(frame, areas.body, title, lines, *scroll, p),
        Body::Stats {
            lines,
            packets,
            bytes,
        } => {
            let n = lines.len() as u16;
            let [top, spark1, spark2] = Layout::vertical([
                Constraint::Length(n.min(areas.body.height)),
                Constraint::Fill(1),
                Constraint::Fill(1),
            ])
            .areas(areas.body);
            frame.render_widget(
                Paragraph::new(lines.iter().map(|l| line(l, p)).collect::<Vec<_>>()),
                top,
            );
            let pk = Sparkline::default()
                .block(
                    Block::default()
                        .borders(Borders::TOP)
                        .title(Span::styled(" packets/s (packet time) ", p.header)),
                )
                .data(packets)
                .style(p.encrypted);
            let by = Sparkline::default()
                .block(
                    Block::default()
                        .borders(Borders::TOP)
                        .title(Span::styled(" bytes/s ", p.header)),
                )
                .data(bytes)
                .style(p.allowed);
            frame.render_widget(pk, spark1);
            frame.render_widget(by, spark2);
        }
    }
    frame.render_widget(Paragraph::new(line(&screen.input, p)), areas.input);
    frame.render_widget(Paragraph::new(line(&screen.status, p)), areas.status);
    if let Some(vm) = &screen.help {
        help(frame, frame.area(), vm, p);
    }
}
