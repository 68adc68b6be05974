import { createContext, useContext } from "react";
import { getProject } from "./api";

export const ProjectContext = createContext<string>(getProject());

export const useProject = () => useContext(ProjectContext);
