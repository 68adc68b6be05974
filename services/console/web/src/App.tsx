import {
  AuditOutlined,
  ClusterOutlined,
  DashboardOutlined,
  DeleteRowOutlined,
  NodeIndexOutlined,
  SearchOutlined,
  TeamOutlined,
} from "@ant-design/icons";
import { App as AntApp, AutoComplete, Button, ConfigProvider, Layout, Menu, Space, Spin, Typography } from "antd";
import { useCallback, useEffect, useState } from "react";
import { HashRouter, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { ApiError, api, getProject, getToken, onUnauthenticated, setProject, setToken } from "./api";
import "./style.css";
import { AuditPage } from "./pages/Audit";
import { BrowserPage } from "./pages/Browser";
import { ClusterPage } from "./pages/Cluster";
import { DeadLettersPage } from "./pages/DeadLetters";
import { GroupsPage } from "./pages/Groups";
import { LoginPage } from "./pages/Login";
import { OverviewPage } from "./pages/Overview";
import { QueueDetailPage } from "./pages/QueueDetail";
import { TracePage } from "./pages/Trace";
import { ProjectContext } from "./project";

const { Header, Sider, Content } = Layout;

const menu = [
  { key: "/", icon: <DashboardOutlined />, label: "Overview" },
  { key: "/messages", icon: <SearchOutlined />, label: "Messages" },
  { key: "/deadletters", icon: <DeleteRowOutlined />, label: "Dead letters" },
  { key: "/groups", icon: <TeamOutlined />, label: "Consumer groups" },
  { key: "/trace", icon: <NodeIndexOutlined />, label: "Trace" },
  { key: "/cluster", icon: <ClusterOutlined />, label: "Cluster" },
  { key: "/audit", icon: <AuditOutlined />, label: "Audit log" },
];

function Shell({ onLogout }: { onLogout?: () => void }) {
  const nav = useNavigate();
  const loc = useLocation();
  const [project, setP] = useState(getProject());
  const [draft, setDraft] = useState(project);
  const [projects, setProjects] = useState<{ id: string; name: string; account: string }[]>([]);
  // The projects the caller can see, to pick from; without the right to
  // list them the field takes any project id.
  useEffect(() => {
    api.projects().then(setProjects, () => setProjects([]));
  }, []);
  const choose = (v: string) => {
    setDraft(v.trim());
    setProject(v.trim());
    setP(v.trim());
  };
  const selected = menu.find((m) => m.key !== "/" && loc.pathname.startsWith(m.key))?.key ?? "/";
  return (
    <ProjectContext.Provider value={project}>
      <Layout style={{ minHeight: "100vh" }}>
        <Sider width={210} theme="dark" breakpoint="lg" collapsedWidth={0}>
          <div className="brand" onClick={() => nav("/")}>
            DMS console
          </div>
          <Menu theme="dark" mode="inline" selectedKeys={[selected]} items={menu} onClick={(e) => nav(e.key)} />
        </Sider>
        <Layout>
          <Header className="topbar">
            <Space>
              <Typography.Text strong style={{ color: "#fff" }}>
                Project
              </Typography.Text>
              <AutoComplete
                data-testid="project"
                value={draft}
                style={{ width: 340 }}
                options={projects.map((p) => ({ value: p.id, label: `${p.name} (${p.account}) ${p.id}` }))}
                onChange={setDraft}
                onSelect={(v: string) => choose(v)}
                onKeyDown={(e) => e.key === "Enter" && choose(draft)}
                placeholder="project id"
              />
            </Space>
            {onLogout && (
              <Button data-testid="logout" onClick={onLogout}>
                Log out
              </Button>
            )}
          </Header>
          <Content className="content">
            <Routes>
              <Route path="/" element={<OverviewPage />} />
              <Route path="/queues/:queue" element={<QueueDetailPage />} />
              <Route path="/messages" element={<BrowserPage />} />
              <Route path="/deadletters" element={<DeadLettersPage />} />
              <Route path="/groups" element={<GroupsPage />} />
              <Route path="/trace" element={<TracePage />} />
              <Route path="/cluster" element={<ClusterPage />} />
              <Route path="/audit" element={<AuditPage />} />
            </Routes>
          </Content>
        </Layout>
      </Layout>
    </ProjectContext.Provider>
  );
}

type AuthState = "probing" | "open" | "login" | "token";

// App decides whether the server wants a login: it lists the project's
// queues once; a 401 means authentication is on.
export function App() {
  const [auth, setAuth] = useState<AuthState>(getToken() ? "token" : "probing");
  const logout = useCallback(() => {
    setToken(null);
    setAuth("login");
  }, []);
  useEffect(() => onUnauthenticated(() => setAuth("login")), []);
  useEffect(() => {
    if (auth !== "probing") return;
    api
      .listQueues(getProject())
      .then(() => setAuth("open"))
      .catch((e) => setAuth(e instanceof ApiError && e.status === 401 ? "login" : "open"));
  }, [auth]);
  let body;
  if (auth === "probing") body = <Spin style={{ margin: 80 }} />;
  else if (auth === "login")
    body = (
      <LoginPage
        onToken={(t, project) => {
          setToken(t);
          if (project) setProject(project);
          setAuth("token");
        }}
      />
    );
  else body = <Shell onLogout={auth === "token" ? logout : undefined} />;
  return (
    <ConfigProvider theme={{ token: { colorPrimary: "#1f6feb", borderRadius: 4 } }}>
      <AntApp>
        <HashRouter>{body}</HashRouter>
      </AntApp>
    </ConfigProvider>
  );
}
